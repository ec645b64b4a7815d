#!/usr/bin/env bash
# Every bench script once, as small as it goes: each installs what it needs
# and must finish with its figures printed, so none rots between the runs
# that measure. CI runs it with the test build (WEIR_BIN=target/debug/weir);
# the figures of a smoke run mean nothing.
# Usage: bench/smoke.sh [script name...]   (default: every one)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export WEIR_BIN="${WEIR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/weir}"
[ -x "$WEIR_BIN" ] || (cd "$ROOT" && cargo build -q)
# Each script with the smallest arguments that still run every part of it.
declare -A ARGS=(
    [before_after.sh]="$WEIR_BIN 1"
    [burndown.sh]="2000 1 16"
    [celery.sh]="200"
    [defaults.sh]="200 1 sqlite"
    [hostile.sh]="50 1"
    [http_delivery.sh]="200"
    [idle_api.sh]="200"
    [ingest.sh]="2s"
    [lb.sh]="1s 1"
    [lb_bad_day.sh]="200 3"
    [lb_cpu.sh]="1000 2s 1 profile"
    [lb_split.sh]="1s"
    [loadgen.sh]="1s 8"
    [overload.sh]="3s lb"
    [pgbouncer.sh]="2000 1"
    [request_log.sh]="2s"
    [retention.sh]="2000 10000"
    [sqlite_sync.sh]="2s"
    [task_browser.sh]="2000 2"
    [task_path.sh]="300 1 statements"
    [tasks.sh]="500"
    [tls.sh]="1s 1 100"
    [tls_burst.sh]="200 100 1"
    [workflow_chains_cpu.sh]="20 3"
    [workflows.sh]="10 1 10 3 100"
)
scripts=("$@")
if [ ${#scripts[@]} -eq 0 ]; then
    for f in "$ROOT"/bench/*.sh; do
        case $(basename "$f") in lib.sh|setup.sh|smoke.sh) ;; *) scripts+=("$(basename "$f")") ;; esac
    done
fi
failed=()
for script in "${scripts[@]}"; do
    [ -n "${ARGS[$script]+set}" ] || { echo "bench/smoke: no smoke arguments for $script" >&2; exit 2; }
    started=$SECONDS
    log=$(mktemp /tmp/weir-smoke.XXXXXX)
    # shellcheck disable=SC2086
    if BENCHES="tasks.sh 200" NEW_WEIR_BIN="$WEIR_BIN" timeout 300 bash "$ROOT/bench/$script" ${ARGS[$script]} >"$log" 2>&1; then
        echo "bench/smoke: $script ok ($((SECONDS - started)) s)"
    else
        echo "bench/smoke: $script FAILED ($((SECONDS - started)) s); its last lines:"
        tail -20 "$log" | sed 's/^/    /'
        failed+=("$script")
    fi
    rm -f "$log"
done
[ ${#failed[@]} -eq 0 ] || { echo "bench/smoke: failed: ${failed[*]}"; exit 1; }
