-- Running tasks whose lease ended before $1: out of attempts, they move to
-- tasks_finished as dead; else they are queued again. $2 is recorded as the
-- attempt's error. Returns (the ids now dead, how many were queued again).
WITH expired AS (
    SELECT id FROM tasks WHERE state = 'running' AND lease_expires_at < $1
    FOR UPDATE SKIP LOCKED),
dead AS (
    DELETE FROM tasks t USING expired e
    WHERE t.id = e.id AND t.attempts >= t.max_attempts
    RETURNING t.id, t.kind, t.input, t.attempts, t.max_attempts, t.priority,
              t.worker_id, t.created_at, t.run_at, t.started_at, t.errors,
              t.queue, t.concurrency_key, t.backoff_base_ms, t.backoff_cap_ms,
              t.timeout_ms, t.tenant),
archived AS (
    INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts,
        max_attempts, priority, worker_id, created_at, run_at, started_at, completed_at,
        queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, errors)
    SELECT id, kind, input, 'dead', NULL, $2, attempts, max_attempts, priority,
           worker_id, created_at, run_at, started_at, $1, queue, concurrency_key,
           backoff_base_ms, backoff_cap_ms, timeout_ms, tenant,
           errors || jsonb_build_array(jsonb_build_object('attempt', attempts,
               'error', $2::text, 'at', $1::timestamptz, 'worker_id', worker_id))
    FROM dead
    RETURNING id),
requeued AS (
    UPDATE tasks t SET state = 'queued', error = $2, lease_expires_at = NULL,
        errors = t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
            'error', $2::text, 'at', $1::timestamptz, 'worker_id', t.worker_id))
    FROM expired e WHERE t.id = e.id AND t.attempts < t.max_attempts
    RETURNING t.id)
SELECT (SELECT COALESCE(array_agg(id), '{}') FROM archived), (SELECT COUNT(*) FROM requeued)
