-- Every failed attempt's error, oldest first: [{"attempt","error","at","worker_id"}].
ALTER TABLE tasks ADD COLUMN errors JSONB NOT NULL DEFAULT '[]';
ALTER TABLE tasks_finished ADD COLUMN errors JSONB NOT NULL DEFAULT '[]';
