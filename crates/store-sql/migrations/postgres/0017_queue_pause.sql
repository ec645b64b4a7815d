-- A queue can be paused: no claimer takes its tasks until it is resumed.
-- `limited` says whether claims must look at a queue's row (a limit, or a
-- pause) — the one place that decides which queues the fast claim skips.
ALTER TABLE queues ADD COLUMN paused BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE queues ADD COLUMN limited BOOLEAN GENERATED ALWAYS AS
    (concurrency IS NOT NULL OR rate_per_second IS NOT NULL OR paused) STORED;
