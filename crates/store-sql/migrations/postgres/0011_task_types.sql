-- A submission's own per-attempt time limit (NULL: its type's).
ALTER TABLE tasks ADD COLUMN timeout_ms BIGINT;
ALTER TABLE tasks_finished ADD COLUMN timeout_ms BIGINT;
-- The task types each worker runs, so `weir status` can name a queued type
-- that no worker can run.
ALTER TABLE workers ADD COLUMN task_types JSONB NOT NULL DEFAULT '[]';
