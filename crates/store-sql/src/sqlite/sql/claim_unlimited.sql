-- The fast claim: tasks no limit touches. {filter} is filter::fast_claim_filter.
-- ?1 worker, ?2 now, ?3 lease end, ?4 most tasks.
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
                 worker_id = ?1, started_at = ?2, lease_expires_at = ?3
WHERE id IN (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= ?2 AND {filter}
    ORDER BY priority DESC, run_at, id LIMIT ?4)
RETURNING id, kind, input, attempts, max_attempts, lease_token, priority, run_at,
          backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, trace_context
