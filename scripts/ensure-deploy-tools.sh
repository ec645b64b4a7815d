#!/usr/bin/env bash
# The tools the deployment tests use: podman, runc and debootstrap (the
# image test), pgbouncer (tests through a transaction pooler), kubectl's
# kustomize and kubernetes-validate (the manifests). Safe to run any number
# of times; installs only what is missing.
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
if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
    echo "ensure-deploy-tools: installing kubernetes-validate" >&2
    python3 -m pip install -q kubernetes-validate >/dev/null
fi
echo "ensure-deploy-tools: podman, runc, debootstrap, pgbouncer, kubectl, kubernetes-validate" >&2
