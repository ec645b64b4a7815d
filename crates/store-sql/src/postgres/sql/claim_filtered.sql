-- Tasks of one limited queue ($5), or of the claimer's unlimited queues ($7,
-- NULL: any) when $5 is NULL; with key $6, or without a key when NULL; of the
-- claimer's types ($8, NULL: any). $1 worker, $2 now, $3 lease end, $4 most tasks.
WITH picked AS (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= $2
      AND (CASE WHEN $5::text IS NULL
                THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue
                                 AND q.limited)
                     AND ($7::text[] IS NULL OR queue = ANY($7))
                ELSE queue = $5 END)
      AND (CASE WHEN $6::text IS NULL THEN concurrency_key IS NULL ELSE concurrency_key = $6 END)
      AND ($8::text[] IS NULL OR kind = ANY($8))
    ORDER BY priority DESC, run_at, id LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET state = 'running', attempts = t.attempts + 1, lease_token = t.lease_token + 1,
                   worker_id = $1, started_at = $2, lease_expires_at = $3
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.kind, t.input, t.attempts, t.max_attempts, t.lease_token, t.priority, t.run_at,
          t.backoff_base_ms, t.backoff_cap_ms, t.timeout_ms, t.tenant, t.trace_context
