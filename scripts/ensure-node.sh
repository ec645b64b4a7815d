#!/usr/bin/env bash
# Node.js 20 or later and npm, for the TypeScript client's tests
# (clients/typescript: `npm test` starts its own `weir up`), then the
# client's pinned dev dependencies (typescript, @types/node) from its
# package-lock.json with `npm ci`. Installs Debian's nodejs and npm when
# node or npm is missing; where Debian's node is older than 20 (bookworm has
# 18), a Node.js 20 from the npm registry's node-linux-<arch> package goes to
# /usr/local/bin, ahead of it. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_FALLBACK=20.20.2
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "ensure-node: installing Debian's nodejs and npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if (($(node_major) < 20)); then
    case "$(uname -m)" in
        x86_64) arch=x64 ;;
        aarch64) arch=arm64 ;;
        *) echo "ensure-node: node $(node --version) is older than 20, and no fallback for $(uname -m)" >&2; exit 1 ;;
    esac
    echo "ensure-node: node $(node --version) is older than 20; installing node-linux-$arch@$NODE_FALLBACK from npm" >&2
    prefix=/usr/local/lib/weir-node
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error \
        "node-linux-$arch@$NODE_FALLBACK" >/dev/null
    ln -sf "$prefix/node_modules/node-linux-$arch/bin/node" /usr/local/bin/node
    hash -r
    (($(node_major) >= 20)) || { echo "ensure-node: still $(node --version) on PATH" >&2; exit 1; }
fi

cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error >/dev/null
echo "ensure-node: node $(node --version), npm $(npm --version), clients/typescript's dev dependencies installed" >&2
