-- A workflow step cancelled by its parent's failure back into the hot table,
-- waiting again, when that parent is retried. Its lease token starts from the
-- clock, as a retried task's does.
WITH moved AS (DELETE FROM tasks_finished WHERE id = $1 AND state = 'cancelled' RETURNING *)
INSERT INTO tasks (id, kind, input, state, error, attempts, max_attempts, priority,
                   worker_id, lease_token, created_at, run_at, started_at, errors,
                   queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant)
SELECT id, kind, input, 'waiting', NULL, attempts, max_attempts, priority, worker_id,
       (extract(epoch FROM $2::timestamptz) * 1000)::bigint, created_at,
       GREATEST(run_at, $2), started_at, errors, queue, concurrency_key, backoff_base_ms,
       backoff_cap_ms, timeout_ms, tenant
FROM moved
