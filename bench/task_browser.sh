#!/usr/bin/env bash
# The task browser at scale (issue #39, item 1): ROWS tasks of mixed states
# seeded into PostgreSQL, then every filter's first page and next page
# through `weir api`, ROUNDS times each; prints p50/p99 (ms) per filter, and
# with PLANS=1 the plans PostgreSQL chose (auto_explain, from the server's
# log), summed up by bench/plans_summary.py: conditions, time, scans used.
# Usage: bench/task_browser.sh [ROWS 1000000] [ROUNDS 50]
source "$(dirname "$0")/lib.sh"
ROWS=${1:-1000000}; ROUNDS=${2:-50}
bash "$ROOT/bench/setup.sh" >&2
build_weir
DB=$(fresh_db weir_bench_browser)
"$WEIR" migrate --database-url "$DB" >/dev/null
echo "seeding $ROWS tasks…" >&2
SEEDED=$(date +%s)
psql "$DB" -q -v rows="$ROWS" -f "$ROOT/bench/task_browser_seed.sql"
echo "seeded in $(( $(date +%s) - SEEDED )) s" >&2
start_api() {
    local port; port=$(free_port)
    RUST_LOG=warn "$WEIR" api --listen "127.0.0.1:$port" --database-url "$DB" >"$WORK/api-$port.log" 2>&1 &
    API_PID=$!; PIDS+=("$API_PID"); API_URL="http://127.0.0.1:$port"
    wait_http "$API_URL/health/live"
}
start_api
# One workflow of 1,000 steps, for the workflow filter.
WORKFLOW=$(python3 - "$API_URL" <<'PY'
import json, sys, urllib.request
steps = [{"id": f"s{i}", "type": "noop", "input": {}} for i in range(1000)]
req = urllib.request.Request(sys.argv[1] + "/workflows", json.dumps({"steps": steps}).encode(),
                             {"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req))["workflow_id"])
PY
)
python3 "$ROOT/bench/task_browser.py" "$API_URL" "$ROUNDS" "$WORKFLOW"
if [ "${PLANS:-0}" = 1 ]; then
    LOG=$(pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $7; exit}')
    if [ -z "$LOG" ] || [ ! -r "$LOG" ]; then
        echo "bench: no readable PostgreSQL log for the plans" >&2
    else
        stop_pid "$API_PID"
        psql "$PG_ADMIN" -qc "ALTER DATABASE weir_bench_browser SET session_preload_libraries = 'auto_explain'" \
             -c "ALTER DATABASE weir_bench_browser SET auto_explain.log_min_duration = 0" \
             -c "ALTER DATABASE weir_bench_browser SET auto_explain.log_analyze = on"
        START=$(wc -l <"$LOG")
        start_api
        python3 "$ROOT/bench/task_browser.py" "$API_URL" 1 "$WORKFLOW" >/dev/null
        tail -n +"$START" "$LOG" | python3 "$ROOT/bench/plans_summary.py"
    fi
fi
stop_pid "$API_PID"; PIDS=()
drop_db weir_bench_browser
