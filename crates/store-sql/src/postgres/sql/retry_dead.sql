-- A dead task back into the hot table with fresh attempts. tasks_finished
-- keeps no lease token, so the new one starts from the clock (in ms): above
-- any token an attempt of the task's earlier life can hold, so such a late
-- completion stays fenced off. {columns} is LIVE_TASK_COLUMNS.
WITH moved AS (DELETE FROM tasks_finished WHERE id = $1 AND state = 'dead' RETURNING *)
INSERT INTO tasks (id, kind, input, state, error, attempts, max_attempts, priority,
                   worker_id, lease_token, created_at, run_at, started_at, errors,
                   queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant)
SELECT id, kind, input, 'queued', error, 0, max_attempts, priority, worker_id,
       (extract(epoch FROM $2::timestamptz) * 1000)::bigint, created_at, $2, started_at,
       errors, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant
FROM moved RETURNING {columns}
