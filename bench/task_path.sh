#!/usr/bin/env bash
# What one task costs on PostgreSQL, end to end: `weir up` (3 API nodes, 3
# workers x 32) on a fresh database, N md5 tasks of distinct inputs submitted
# through its lb and read back (`weir bench tasks`, 64 clients). Per task:
# tasks/s, the CPU µs of weir and of PostgreSQL (every backend, reaped ones
# included), and PostgreSQL's transactions, WAL bytes and WAL syncs — which
# hold steady where a rate does not. Medians of interleaved rounds.
# With `statements` as a third argument, one more run logs every statement
# of its database (log_statement = all; read from the server's log file) and
# prints the statements per task by kind.
# WEIR_VARIANT_BIN=<another weir binary> runs it too, in the same rounds
# ("variant"): a change's before and after side by side.
# Usage: bench/task_path.sh [tasks, default 20000] [rounds, default 3] [statements]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-20000}
ROUNDS=${2:-3}
STATEMENTS=${3:-}
bash "$ROOT/scripts/ensure-services.sh" >&2
build_weir
PG=$(pg_pid)
q() { psql "$PG_ADMIN" -Atqc "$1"; }
db_counters() { q "SELECT xact_commit || ' ' || tup_inserted FROM pg_stat_database WHERE datname = 'weir_bench_task_path'"; }

# One run with binary $1; prints "tasks/s weir_us pg_us commits rows wal_bytes wal_syncs" (per task).
run() {
    local bin=$1 db
    db=$(fresh_db weir_bench_task_path)
    [ -n "${LOG_ALL:-}" ] && q "ALTER DATABASE weir_bench_task_path SET log_statement = 'all'"
    WEIR="$bin" start_weir_up "$db" --worker-concurrency 32
    "$bin" bench tasks --target "$UP_URL" --tasks 500 --concurrency 64 --json >/dev/null   # warm-up
    q "SELECT pg_stat_reset_shared('wal')" >/dev/null
    local c0 w0 p0 out
    c0=$(db_counters); w0=$(cpu_ticks "$UP_PID"); p0=$(cpu_ticks "$PG")
    [ -n "${LOG_ALL:-}" ] && psql "$db" -Atqc "SELECT 'task_path: measured run starts'" >/dev/null
    out=$("$bin" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency 64 --json)
    local w=$(($(cpu_ticks "$UP_PID") - w0)) p=$(($(cpu_ticks "$PG") - p0))
    local c1 wal
    c1=$(db_counters); wal=$(q "SELECT wal_bytes || ' ' || wal_sync FROM pg_stat_wal")
    stop_pid "$UP_PID"; PIDS=()
    drop_db weir_bench_task_path
    python3 - "$out" "$c0" "$c1" "$wal" "$TASKS" "$(us_per "$w" "$TASKS")" "$(us_per "$p" "$TASKS")" <<'PY'
import json, sys
out, c0, c1, wal, n, w, p = sys.argv[1:]
n = int(n)
(x0, r0), (x1, r1) = (map(int, c.split()) for c in (c0, c1))
wb, ws = map(float, wal.split())
print(round(json.loads(out)["tasks_per_sec"]), w, p, f"{(x1 - x0) / n:.2f}", f"{(r1 - r0) / n:.2f}",
      round(wb / n), f"{ws / n:.2f}")
PY
}

declare -A RUNS=()
builds=(weir)
[ -n "${WEIR_VARIANT_BIN:-}" ] && builds+=(variant)
for round in $(seq 1 "$ROUNDS"); do
    for b in "${builds[@]}"; do
        bin=$WEIR; [ "$b" = variant ] && bin=$WEIR_VARIANT_BIN
        RUNS[$b]+="$(run "$bin");"
    done
    echo "round $round of $ROUNDS done" >&2
done

echo
echo "md5 tasks end to end on PostgreSQL: $TASKS tasks, weir up (3 API nodes, 3 workers x 32), 64 clients;"
echo "medians of $ROUNDS interleaved rounds, per task"
printf "%-10s %9s %9s %9s %14s %12s %10s %10s\n" build "tasks/s" "weir µs" "PG µs" "transactions" "rows added" "WAL bytes" "WAL syncs"
for b in "${builds[@]}"; do
    # shellcheck disable=SC2046
    printf "%-10s %9s %9s %9s %14s %12s %10s %10s\n" "$b" $(python3 - "${RUNS[$b]}" <<'PY'
import statistics, sys
runs = [r.split() for r in sys.argv[1].split(";") if r.strip()]
print(" ".join(f"{statistics.median(float(r[i]) for r in runs):g}" for i in range(7)))
PY
)
done
[ -n "${WEIR_VARIANT_BIN:-}" ] && echo "weir: ${WEIR}; variant: ${WEIR_VARIANT_BIN}"

if [ "$STATEMENTS" = statements ]; then
    LOG=$(ls /var/log/postgresql/postgresql-*-main.log 2>/dev/null | head -1 || true)
    if [ -z "$LOG" ] || [ ! -r "$LOG" ]; then
        echo "statements: no readable PostgreSQL log under /var/log/postgresql; skipped"
        exit 0
    fi
    for b in "${builds[@]}"; do
        bin=$WEIR; [ "$b" = variant ] && bin=$WEIR_VARIANT_BIN
        from=$(($(wc -l <"$LOG") + 1))
        LOG_ALL=1 run "$bin" >/dev/null
        echo
        echo "statements per task ($b), by kind (the measured run's; BEGIN/COMMIT counted):"
        tail -n +"$from" "$LOG" | sed -n '/task_path: measured run starts/,$p' |
            grep -o 'LOG:  \(statement\|execute [^:]*\): .*' | sed -E 's/LOG:  (statement|execute [^:]*): //' |
            cut -c1-70 | sort | uniq -c | sort -rn | head -15 |
            awk -v n="$TASKS" '{c=$1; $1=""; printf "  %6.2f %s\n", c / n, $0} END {}'
    done
fi
