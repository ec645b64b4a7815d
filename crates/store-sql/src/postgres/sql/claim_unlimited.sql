-- The fast claim: tasks no limit touches. {filter} is filter::fast_claim_filter.
-- Walks the partial index `tasks_claim` in order and skips rows other
-- claimers hold, so concurrent workers never queue behind each other.
-- $1 worker, $2 now, $3 lease end, $4 most tasks.
WITH picked AS (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= $2 AND {filter}
    ORDER BY priority DESC, run_at, id LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET state = 'running', attempts = t.attempts + 1, lease_token = t.lease_token + 1,
                   worker_id = $1, started_at = $2, lease_expires_at = $3
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.kind, t.input, t.attempts, t.max_attempts, t.lease_token, t.priority, t.run_at,
          t.backoff_base_ms, t.backoff_cap_ms, t.timeout_ms, t.tenant, t.trace_context
