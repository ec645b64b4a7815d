#!/usr/bin/env bash
# Makes sure the binaries the tests start their own servers from are
# installed: PostgreSQL (initdb, postgres, pg_isready) and Redis (redis-server,
# redis-cli). Nothing needs to be running: the test suite starts private
# instances on free ports (crates/testkit/src/services.rs). Safe to run any
# number of times.
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
echo "ensure-test-packages: PostgreSQL and Redis binaries are installed" >&2
