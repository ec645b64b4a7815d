-- A live task out of the hot table, cancelled: a running attempt's completion
-- and lease renewals no longer find their row, so they are refused.
-- {columns} is FINISHED_TASK_COLUMNS.
WITH moved AS (DELETE FROM tasks WHERE id = $1 RETURNING *)
INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts,
                            priority, worker_id, created_at, run_at, started_at, completed_at,
                            errors, queue, concurrency_key, backoff_base_ms,
                            backoff_cap_ms, timeout_ms, tenant)
SELECT id, kind, input, 'cancelled', NULL, error, attempts, max_attempts, priority,
       worker_id, created_at, run_at, started_at, $2, errors, queue, concurrency_key,
       backoff_base_ms, backoff_cap_ms, timeout_ms, tenant
FROM moved
RETURNING {columns}
