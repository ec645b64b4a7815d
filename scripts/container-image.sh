#!/usr/bin/env bash
# Builds the Dockerfile's runtime stage with podman, around a weir binary
# built outside (this machine cannot pull the Rust image the build stage
# starts from, nor any base image: Debian's base is made with debootstrap
# and imported once). Everything else of the stage — user, healthcheck,
# entrypoint — is the Dockerfile's own text.
# Usage: scripts/container-image.sh BINARY TAG
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BINARY=$1
TAG=$2
BASE=docker.io/library/debian:bookworm-slim

if ! podman image exists "$BASE"; then
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
    rm -rf "$rootfs"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$BINARY" "$context/weir"
python3 - "$ROOT/Dockerfile" "$context/Containerfile" <<'PY'
import sys
text = open(sys.argv[1]).read()
start = text.index("FROM docker.io/library/debian:bookworm-slim AS runtime")
copy = "COPY --from=build /out/weir /usr/local/bin/weir"
stage = text[start:]
assert copy in stage, "the runtime stage no longer copies the binary from the build stage"
open(sys.argv[2], "w").write(stage.replace(copy, "COPY weir /usr/local/bin/weir"))
PY
# chroot isolation: RUN steps need no OCI runtime or cgroups.
podman build --quiet --format docker --isolation chroot --network host --pull=never \
    -t "$TAG" -f "$context/Containerfile" "$context"
