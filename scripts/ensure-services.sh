#!/usr/bin/env bash
# For benchmarks (the tests start their own servers): makes sure the servers
# the benchmarks use answer: PostgreSQL (WEIR_TEST_DATABASE_URL,
# default postgres://postgres@127.0.0.1:5432/postgres) and Redis (127.0.0.1:6379).
# Starts them when they do not — a test that kills or restarts a server must
# never leave the next run without one. Safe to run any number of times.
set -euo pipefail

PG_URL="${WEIR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

wait_for() { # what, command...
    local what=$1; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "ensure-services: $what does not answer" >&2
    return 1
}

pg_up() { psql "$PG_URL" -Atqc 'SELECT 1' ; }
if ! pg_up >/dev/null 2>&1; then
    echo "ensure-services: starting PostgreSQL" >&2
    if command -v service >/dev/null; then service postgresql start >/dev/null 2>&1 || true; fi
    if ! pg_up >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null; then
        for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do
            pg_ctlcluster "${cluster%/*}" "${cluster#*/}" start >/dev/null 2>&1 || true
        done
    fi
    wait_for PostgreSQL pg_up
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if command -v redis-cli >/dev/null && ! redis_up >/dev/null 2>&1; then
    echo "ensure-services: starting Redis" >&2
    if command -v service >/dev/null; then service redis-server start >/dev/null 2>&1 || true; fi
    if ! redis_up >/dev/null 2>&1; then redis-server --daemonize yes --save '' --appendonly no >/dev/null; fi
    wait_for Redis redis_up
fi
echo "ensure-services: PostgreSQL and Redis answer" >&2
