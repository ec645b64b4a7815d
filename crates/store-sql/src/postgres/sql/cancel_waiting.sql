-- Waiting workflow steps ($1) cancelled, each with its error ($2), out of the
-- hot table into tasks_finished, at $3.
WITH c AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS c(id, error)),
moved AS (
    DELETE FROM tasks t USING c WHERE t.id = c.id AND t.state = 'waiting'
    RETURNING t.*, c.error AS cancel_error
)
INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts,
                            priority, worker_id, created_at, run_at, started_at, completed_at,
                            errors, queue, concurrency_key, backoff_base_ms,
                            backoff_cap_ms, timeout_ms, tenant)
SELECT id, kind, input, 'cancelled', NULL, cancel_error, attempts, max_attempts, priority,
       worker_id, created_at, run_at, started_at, $3, errors, queue, concurrency_key,
       backoff_base_ms, backoff_cap_ms, timeout_ms, tenant
FROM moved
