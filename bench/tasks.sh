#!/usr/bin/env bash
# End-to-end md5 tasks (submitted through the lb → succeeded): tasks/s and
# submit-to-start latency, side by side on SQLite and on PostgreSQL, and on
# PostgreSQL again while another session holds a REPEATABLE READ transaction
# open for the whole run (pinning VACUUM's horizon). Also the wake-up latency
# of one task submitted into an idle system.
# Usage: bench/tasks.sh [tasks, default 20000]
# Env: WORKER_CONCURRENCY (default 32), CLIENTS (default 64).
source "$(dirname "$0")/lib.sh"
TASKS=${1:-20000}
WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-32}
CLIENTS=${CLIENTS:-64}
bash "$ROOT/scripts/ensure-services.sh" >&2
build_weir

field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

# Runs both benches against a fresh `weir up` on $1; prints "tasks/s p50 p99 idle_p50 idle_p99".
measure() {
    start_weir_up "$1" --worker-concurrency "$WORKER_CONCURRENCY"
    local t i
    t=$("$WEIR" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency "$CLIENTS" --json)
    i=$("$WEIR" bench idle --target "$UP_URL" --samples 200 --json)
    stop_pid "$UP_PID"; PIDS=()
    echo "$(field "$t" 'round(tasks_per_sec)') $(field "$t" 'submit_to_start["p50_ms"]') $(field "$t" 'submit_to_start["p99_ms"]') $(field "$i" 'submit_to_start["p50_ms"]') $(field "$i" 'submit_to_start["p99_ms"]')"
}

read -r s_tps s_p50 s_p99 s_ip50 s_ip99 < <(measure sqlite)

DB=$(fresh_db weir_bench_tasks)
read -r p_tps p_p50 p_p99 p_ip50 p_ip99 < <(measure "$DB")
drop_db weir_bench_tasks

# The same, with VACUUM's horizon pinned by a long REPEATABLE READ transaction.
DB=$(fresh_db weir_bench_tasks)
psql "$DB" -qc "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class; SELECT pg_sleep(3600);" >/dev/null 2>&1 &
HOLDER=$!
PIDS+=("$HOLDER")
for _ in $(seq 1 100); do
    pinned=$(psql "$PG_ADMIN" -Atqc "SELECT count(*) FROM pg_stat_activity WHERE datname = 'weir_bench_tasks' AND backend_xmin IS NOT NULL AND query LIKE '%pg_sleep%'")
    [ "$pinned" = 1 ] && break; sleep 0.05
done
read -r h_tps h_p50 h_p99 h_ip50 h_ip99 < <(measure "$DB")
dead=$(psql "$DB" -Atqc "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'")
kill "$HOLDER" 2>/dev/null || true
drop_db weir_bench_tasks

echo
echo "end-to-end md5 tasks: $TASKS tasks, $CLIENTS clients, weir up (3 API nodes, 3 workers x $WORKER_CONCURRENCY)"
printf "%-40s %10s %14s %14s %15s %15s\n" store "tasks/s" "start p50 ms" "start p99 ms" "idle p50 ms" "idle p99 ms"
printf "%-40s %10s %14s %14s %15s %15s\n" "SQLite" "$s_tps" "$s_p50" "$s_p99" "$s_ip50" "$s_ip99"
printf "%-40s %10s %14s %14s %15s %15s\n" "PostgreSQL" "$p_tps" "$p_p50" "$p_p99" "$p_ip50" "$p_ip99"
printf "%-40s %10s %14s %14s %15s %15s\n" "PostgreSQL, horizon pinned" "$h_tps" "$h_p50" "$h_p99" "$h_ip50" "$h_ip99"
echo "pinned/undisturbed throughput: $(ratio "$h_tps" "$p_tps") (floor 0.80); dead tuples left in tasks: $dead"
echo "idle submit-to-start p99 on PostgreSQL: $p_ip99 ms (target < 50 ms)"
