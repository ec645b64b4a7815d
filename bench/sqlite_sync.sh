#!/usr/bin/env bash
# What syncing every commit costs on SQLite: `weir up` with
# --sqlite-synchronous normal against full (the default), side by side in one
# run, on the same loads: request logging (GET /?message=… → a row each,
# wrk -c64), tiny tasks (POST /tasks noop, run far ahead so only the insert
# is measured, wrk -c64) and NDJSON ingest (500 events per POST, wrk -c8).
# Prints each load's rate per mode and full/normal.
# Usage: bench/sqlite_sync.sh [duration, default 10s]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-10s}
command -v wrk >/dev/null || bash "$ROOT/bench/setup.sh" >&2
build_weir
secs() { python3 -c "import sys; print(float(sys.argv[1].rstrip('s')))" "$DURATION"; }

python3 - "$WORK/batch.ndjson" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(500):
        f.write(json.dumps({"level": "info", "service": "checkout", "msg": "order placed", "order": i}) + "\n")
PY
echo '{"type":"noop","input":{},"run_at":"2099-01-01T00:00:00Z"}' >"$WORK/task.json"
TASK_LUA=$(post_lua "$WORK/task.json" application/json)
BATCH_LUA=$(post_lua "$WORK/batch.ndjson" application/x-ndjson)

# "acked/s p99_ms" of one wrk run; acked counts 2xx answers only.
load() { # url connections [lua]
    local out; out=$(wrk -t2 -c"$2" -d"$DURATION" --latency ${3:+-s "$3"} "$1")
    local total non2xx p99
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    echo "$(python3 -c "print(round(($total - $non2xx) / $(secs)))") $(to_ms "$p99")"
}

declare -A R
for mode in normal full; do
    start_weir_up sqlite --sqlite-synchronous "$mode"
    R[$mode,log]=$(load "$UP_URL/?message=bench" 64)
    R[$mode,task]=$(load "$UP_URL/tasks" 64 "$TASK_LUA")
    R[$mode,ingest]=$(load "$UP_URL/write" 8 "$BATCH_LUA")
    stop_pid "$UP_PID"; PIDS=()
done

printf '%-22s %16s %16s %8s\n' load "normal /s (p99)" "full /s (p99)" full/normal
for l in log task ingest; do
    read -r n np99 <<<"${R[normal,$l]}"
    read -r f fp99 <<<"${R[full,$l]}"
    [ "$l" = ingest ] && { n=$((n * 500)); f=$((f * 500)); }
    case $l in log) name="request log (GET /)";; task) name="tiny tasks (POST)";; ingest) name="NDJSON events";; esac
    printf '%-22s %9s (%4sms) %9s (%4sms) %8s\n' "$name" "$n" "$np99" "$f" "$fp99" "$(ratio "$f" "$n")"
done
