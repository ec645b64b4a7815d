-- Every failed attempt's error, oldest first: [{"attempt","error","at","worker_id"}].
ALTER TABLE tasks ADD COLUMN errors TEXT NOT NULL DEFAULT '[]';
