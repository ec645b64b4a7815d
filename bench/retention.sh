#!/usr/bin/env bash
# Retention without bloat (issue #39, item 4), on PostgreSQL: a burn-down of
# TASKS tasks with no finished tasks kept, then the same with FINISHED
# finished tasks of the last seven days present (seeded by SQL), in one
# run; then, where finished tasks are kept in day partitions, the prune of
# the oldest day, timed.
# Usage: bench/retention.sh [TASKS 100000] [FINISHED 10000000]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-100000}; FINISHED=${2:-10000000}
bash "$ROOT/scripts/ensure-services.sh" >&2
build_weir
DB=$(fresh_db weir_bench_retention)
"$WEIR" migrate --database-url "$DB" >/dev/null
burn() {
    RUST_LOG=error "$WEIR" bench burndown --database-url "$DB" --tasks "$TASKS" \
        --workers 2 --concurrency 256 --retention 30d --json \
        | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["work_per_sec"]))'
}
partitioned=$(psql "$DB" -Atqc "SELECT to_regproc('weir_finished_day_drop') IS NOT NULL")
EMPTY=$(burn)
echo "burn-down, none kept: $EMPTY tasks/s" >&2
echo "seeding $FINISHED finished tasks over seven days…" >&2
SEEDED=$(date +%s)
psql "$DB" -q -v rows="$FINISHED" -v partitioned="$partitioned" >/dev/null <<'SQL'
\if :partitioned
-- The seeded week's days (weir itself makes today's and two ahead).
SELECT weir_finished_days_make(s, (now() AT TIME ZONE 'UTC')::date - 8,
                               (now() AT TIME ZONE 'UTC')::date)
FROM unnest(ARRAY['succeeded', 'dead', 'cancelled']) s;
\endif
-- UUIDv7 ids of their time, as weir makes them (random ones would make the
-- seed walk the primary key at random: minutes longer).
CREATE FUNCTION pg_temp.v7(at timestamptz) RETURNS uuid LANGUAGE sql AS $$
  SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid
$$;
INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts,
    priority, worker_id, created_at, run_at, started_at, completed_at)
SELECT pg_temp.v7(at), 'noop', '{}',
       CASE WHEN i % 50 = 0 THEN 'dead' ELSE 'succeeded' END,
       CASE WHEN i % 50 = 0 THEN NULL ELSE '{}'::jsonb END,
       CASE WHEN i % 50 = 0 THEN 'boom' END, 1, 3, 0, 'worker-1',
       at, at, at, at
FROM (SELECT i, now() - interval '7 days' + interval '7 days' * i / :rows - interval '1 hour' AS at
      FROM generate_series(1, :rows) i) s;
ANALYZE tasks_finished;
SQL
echo "seeded in $(( $(date +%s) - SEEDED )) s" >&2
FULL=$(burn)
echo "burn-down, $FINISHED kept: $FULL tasks/s" >&2
if [ "$partitioned" = t ]; then
    # The days ended six days ago or more, oldest first, as weir's cleaner
    # drops them (the oldest seeded day is a part day; then a whole one).
    PRUNE=$(psql "$DB" -Atq <<'SQL'
\timing on
SELECT weir_finished_day_drop('succeeded', ((now() AT TIME ZONE 'UTC')::date - 5)::timestamp AT TIME ZONE 'UTC', 10000);
SELECT weir_finished_day_drop('succeeded', ((now() AT TIME ZONE 'UTC')::date - 5)::timestamp AT TIME ZONE 'UTC', 10000);
SELECT weir_finished_day_drop('succeeded', ((now() AT TIME ZONE 'UTC')::date - 5)::timestamp AT TIME ZONE 'UTC', 10000);
SQL
)
    echo "$PRUNE" | paste - - | sed 's/^/prune (tasks dropped, time): /' >&2
    # The largest day's time.
    PRUNE_MS=$(echo "$PRUNE" | paste - - | sort -n | tail -1 | awk '{print $3}')
else
    PRUNE_MS="-"
fi
drop_db weir_bench_retention
echo "burn-down of $TASKS: none kept $EMPTY/s, $FINISHED kept $FULL/s, ratio $(ratio "$FULL" "$EMPTY"); prune of a day's partition: $PRUNE_MS ms"
