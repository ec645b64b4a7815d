#!/usr/bin/env bash
# Makes sure scripts/lazyfs.py can run: the power-cut tests mount it over a
# data directory. Needs fusermount3 (Debian's fuse3, which also brings the
# libfuse3 shared library) and the mfusepy binding, which loads libfuse3 with
# ctypes, so no -dev package or compiler is needed. /dev/fuse must come from
# the machine; this script only warns when it is missing. Safe to run any
# number of times.
set -euo pipefail

if ! command -v fusermount3 >/dev/null 2>&1; then
    echo "ensure-fuse: installing fuse3" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends fuse3 >/dev/null
fi
if ! python3 -c 'import mfusepy' >/dev/null 2>&1; then
    echo "ensure-fuse: installing mfusepy" >&2
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'mfusepy==3.1.1'
fi
[[ -e /dev/fuse ]] || echo "ensure-fuse: warning: /dev/fuse is missing, FUSE mounts will fail" >&2
echo "ensure-fuse: fuse3 (fusermount3, libfuse3) and python mfusepy are installed" >&2
