#!/usr/bin/env bash
# The tools the deployment tests use: podman, runc and debootstrap (the
# image test), pgbouncer (tests through a transaction pooler), kubectl's
# kustomize and kubernetes-validate (the manifests), promtool (the alert
# rules, from Debian's prometheus package). Safe to run any number of times;
# installs only what is missing.
set -euo pipefail

missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap pgbouncer:pgbouncer; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if ((${#missing[@]})); then
    echo "ensure-deploy-tools: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "ensure-deploy-tools: installing prometheus (for promtool)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # Only promtool is used: the package must not start a Prometheus server.
    policy=/usr/sbin/policy-rc.d
    had_policy=0; [ -e "$policy" ] && had_policy=1
    [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    [ "$had_policy" = 1 ] || rm -f "$policy"
fi
if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
    echo "ensure-deploy-tools: installing kubernetes-validate" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null
fi
echo "ensure-deploy-tools: podman, runc, debootstrap, pgbouncer, kubectl, kubernetes-validate, promtool" >&2
