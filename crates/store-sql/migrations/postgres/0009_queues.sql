-- Named queues with cluster-wide limits, and concurrency keys.
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
-- The fast claim takes only tasks without a key; an index whose predicate
-- says so keeps the planner on it even before statistics exist (a bare
-- `IS NULL` filter is guessed at 0.5% of rows, which made it sort the table).
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NULL;
ALTER TABLE tasks_finished ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks_finished ADD COLUMN concurrency_key TEXT;
-- Counting a key's running tasks, and finding its queued ones.
CREATE INDEX tasks_concurrency_key ON tasks (concurrency_key, state) WHERE concurrency_key IS NOT NULL;
-- A queue's running tasks are counted among running rows only.
CREATE INDEX tasks_running_queue ON tasks (queue) WHERE state = 'running';
-- Limits per queue; `tokens`/`refilled_at` are the rate limit's bucket.
CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    concurrency     INTEGER,
    rate_per_second DOUBLE PRECISION,
    burst           INTEGER,
    tokens          DOUBLE PRECISION NOT NULL DEFAULT 0,
    refilled_at     TIMESTAMPTZ
);
-- A submission's own backoff between attempts (NULL: the workers' for its type).
ALTER TABLE tasks ADD COLUMN backoff_base_ms BIGINT;
ALTER TABLE tasks ADD COLUMN backoff_cap_ms BIGINT;
ALTER TABLE tasks_finished ADD COLUMN backoff_base_ms BIGINT;
ALTER TABLE tasks_finished ADD COLUMN backoff_cap_ms BIGINT;
