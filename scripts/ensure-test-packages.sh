#!/usr/bin/env bash
# Makes sure the binaries the tests start their own servers from are
# installed: PostgreSQL (initdb, postgres, pg_isready) and Redis (redis-server,
# redis-cli), and Valkey (valkey-server, from bookworm-backports: Debian 12's
# Redis is 7.0, and the test of --ingest-wait-aof needs WAITAOF, Redis 7.2+).
# Nothing needs to be running: the test suite starts private instances on
# free ports (crates/testkit/src/services.rs); package scripts are kept from
# starting a system service. Safe to run any number of times.
set -euo pipefail

have_pg() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
have_redis() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }

missing=()
have_pg || missing+=(postgresql postgresql-client)
have_redis || missing+=(redis-server redis-tools)
if ((${#missing[@]})); then
    echo "ensure-test-packages: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v valkey-server >/dev/null 2>&1; then
    echo "ensure-test-packages: installing valkey-server from bookworm-backports" >&2
    export DEBIAN_FRONTEND=noninteractive
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    list=/etc/apt/sources.list.d/weir-backports.list
    [ -e "$list" ] || echo "deb http://deb.debian.org/debian $codename-backports main" >"$list"
    apt-get update -qq >/dev/null
    # No service started by the package: the tests start their own.
    policy=/usr/sbin/policy-rc.d
    had_policy=0; [ -e "$policy" ] && had_policy=1
    [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
    apt-get install -y -qq --no-install-recommends -t "$codename-backports" valkey-server >/dev/null
    [ "$had_policy" = 1 ] || rm -f "$policy"
fi
# The test of SQL enqueue runs a Python application with psycopg, under
# whichever python3 comes first on PATH (pyenv's, if any), so from PyPI.
if ! python3 -c 'import psycopg' 2>/dev/null; then
    echo "ensure-test-packages: installing psycopg" >&2
    python3 -m pip install -q --root-user-action=ignore 'psycopg[binary]' >/dev/null
fi
echo "ensure-test-packages: PostgreSQL, Redis, Valkey and psycopg are installed" >&2
