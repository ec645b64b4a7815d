#!/usr/bin/env bash
# River-style burn-down: insert 100,000 no-op tasks, then work them all.
# Side by side: weir's workers on PostgreSQL and on SQLite, and the ceiling —
# pgbench running one `UPDATE … FOR UPDATE SKIP LOCKED` statement that claims
# and completes batches of 10 rows, from 2 clients, on a table of the same size.
# Also the CPU µs per task worked: weir's process (workers and their pool)
# and PostgreSQL's server processes, and the ceiling's PostgreSQL.
# Usage: bench/burndown.sh [tasks, default 100000] [workers, default 2] [concurrency, default 256]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-100000}
WORKERS=${2:-2}
CONCURRENCY=${3:-256}
bash "$ROOT/scripts/ensure-services.sh" >&2
build_weir
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print('-' if v is None else round(v))" "$1" "$2"; }

DB=$(fresh_db weir_bench_burn)
P=$(RUST_LOG=error "$WEIR" bench burndown --database-url "$DB" --tasks "$TASKS" --workers "$WORKERS" --concurrency "$CONCURRENCY" --cpu-of "$(pg_pid)" --json)
drop_db weir_bench_burn
S=$(RUST_LOG=error "$WEIR" bench burndown --database-url "sqlite://$WORK/burn.db" --tasks "$TASKS" --workers "$WORKERS" --concurrency "$CONCURRENCY" --json)

# The ceiling: claim-and-complete in one statement, 10 rows at a time.
DB=$(fresh_db weir_bench_ceiling)
psql "$DB" -q <<SQL
CREATE TABLE jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'queued', done_at timestamptz);
CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
INSERT INTO jobs (state) SELECT 'queued' FROM generate_series(1, $TASKS);
VACUUM ANALYZE jobs;
SQL
cat >"$WORK/ceiling.sql" <<'SQL'
UPDATE jobs SET state = 'done', done_at = now()
WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED);
SQL
PER_CLIENT=$(( TASKS / 10 / 2 ))
pg0=$(cpu_ticks "$(pg_pid)")
start=$(date +%s.%N)
pgbench -n -c 2 -j 2 -t "$PER_CLIENT" -f "$WORK/ceiling.sql" "$DB" >/dev/null 2>&1
end=$(date +%s.%N)
ceiling_pg_us=$(us_per $(( $(cpu_ticks "$(pg_pid)") - pg0 )) "$TASKS")
done_rows=$(psql "$DB" -Atqc "SELECT count(*) FROM jobs WHERE state = 'done'")
ceiling=$(python3 -c "print(round($done_rows / ($end - $start)))")
drop_db weir_bench_ceiling

echo
echo "burn-down: $TASKS no-op tasks inserted, then worked ($WORKERS workers x $CONCURRENCY slots, in one process)"
echo "(CPU µs per task worked: weir's process; PostgreSQL's server processes)"
printf "%-52s %12s %12s %10s %10s\n" "" "inserted/s" "worked/s" "weir µs" "store µs"
printf "%-52s %12s %12s %10s %10s\n" "weir, PostgreSQL" "$(field "$P" insert_per_sec)" "$(field "$P" work_per_sec)" \
    "$(field "$P" work_cpu_us)" "$(field "$P" store_work_cpu_us)"
printf "%-52s %12s %12s %10s %10s\n" "weir, SQLite (the store is in weir's process)" "$(field "$S" insert_per_sec)" "$(field "$S" work_per_sec)" \
    "$(field "$S" work_cpu_us)" "-"
printf "%-52s %12s %12s %10s %10s\n" "ceiling: 1 SKIP LOCKED statement per 10 rows (pgbench)" "-" "$ceiling" "-" "$ceiling_pg_us"
echo "weir on PostgreSQL / ceiling: $(ratio "$(field "$P" work_per_sec)" "$ceiling")  (floor 10,000/s, goal 50,000/s)"
