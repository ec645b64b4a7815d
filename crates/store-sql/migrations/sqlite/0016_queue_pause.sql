-- A queue can be paused: no claimer takes its tasks until it is resumed.
-- `limited` says whether claims must look at a queue's row (a limit, or a
-- pause) — the one place that decides which queues the fast claim skips.
ALTER TABLE queues ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queues ADD COLUMN limited INTEGER GENERATED ALWAYS AS
    (concurrency IS NOT NULL OR rate_per_second IS NOT NULL OR paused) VIRTUAL;
