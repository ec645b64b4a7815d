-- Tasks of one limited queue (?5), or of the claimer's unlimited queues (?7,
-- JSON, NULL: any) when ?5 is NULL; with key ?6, or without a key when NULL;
-- of the claimer's types (?8, JSON, NULL: any).
-- ?1 worker, ?2 now, ?3 lease end, ?4 most tasks.
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
                 worker_id = ?1, started_at = ?2, lease_expires_at = ?3
WHERE id IN (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= ?2
      AND (CASE WHEN ?5 IS NULL
                THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue
                                 AND q.limited)
                     AND (?7 IS NULL OR queue IN (SELECT value FROM json_each(?7)))
                ELSE queue = ?5 END)
      AND (CASE WHEN ?6 IS NULL THEN concurrency_key IS NULL ELSE concurrency_key = ?6 END)
      AND (?8 IS NULL OR kind IN (SELECT value FROM json_each(?8)))
    ORDER BY priority DESC, run_at, id LIMIT ?4)
RETURNING id, kind, input, attempts, max_attempts, lease_token, priority, run_at,
          backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, trace_context
