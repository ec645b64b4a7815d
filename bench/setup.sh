#!/usr/bin/env bash
# Installs what the benchmarks run beside weir: wrk and h2load (load), perf,
# nginx, HAProxy and the seeds' Python stacks (gunicorn + Flask + psycopg2;
# FastAPI + uvicorn + asyncpg + redis) in a venv under target/bench-venv.
# Idempotent; run by every bench script.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v perf >/dev/null || need_apt+=(linux-perf)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bench/setup: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # The benchmarks start their own nginx; the packaged service is not wanted.
    (service nginx stop || true) >/dev/null 2>&1
    (service haproxy stop || true) >/dev/null 2>&1
fi

VENV=target/bench-venv
if [ ! -x "$VENV/bin/gunicorn" ]; then
    echo "bench/setup: creating $VENV (gunicorn, flask, psycopg2-binary)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q gunicorn flask psycopg2-binary
fi
if [ ! -x "$VENV/bin/uvicorn" ]; then
    echo "bench/setup: adding fastapi, uvicorn, asyncpg, redis to $VENV" >&2
    "$VENV/bin/pip" install -q fastapi 'uvicorn[standard]' asyncpg redis
fi
bash scripts/ensure-services.sh
