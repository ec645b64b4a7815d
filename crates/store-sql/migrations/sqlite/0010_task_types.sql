-- A submission's own per-attempt time limit (NULL: its type's).
ALTER TABLE tasks ADD COLUMN timeout_ms INTEGER;
-- The task types each worker runs (a JSON list), so `weir status` can name a
-- queued type that no worker can run.
ALTER TABLE workers ADD COLUMN task_types TEXT NOT NULL DEFAULT '[]';
