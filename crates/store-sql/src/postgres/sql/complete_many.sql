-- Records a batch of outcomes in one statement. Finished tasks move to
-- tasks_finished (and successes with a cache key into `cache`); retries stay
-- queued with their new run_at. Every row is fenced by its lease token.
-- Returns the ids applied, each with its state now ('queued': to be retried),
-- whether it is a workflow's step (only those need the workflow's
-- bookkeeping, in further statements), and whether a limit counted it (a
-- concurrency key, a queue with limits: its end may let another be claimed).
-- $11 false: a step's end is left undone and returned as 'step' (when its
-- lease holds), for a transaction that also does its workflow's
-- bookkeeping; everything else commits with this one statement, outside
-- any explicit transaction. A step's retry needs no bookkeeping: applied.
WITH c AS (
    -- `leave`: a step's end this statement leaves (looked up once per row;
    -- referenced twice, the CTE is computed once).
    SELECT u.*, NOT $11 AND u.state IN ('succeeded', 'dead')
                AND (SELECT true FROM workflow_steps s WHERE s.task_id = u.id) IS NOT NULL AS leave
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::jsonb[], $5::text[],
                $6::timestamptz[], $7::timestamptz[])
        AS u(id, token, state, result, error, run_at, now)
),
finished AS (
    DELETE FROM tasks t USING c
    WHERE t.id = c.id AND t.lease_token = c.token AND t.state = 'running'
      AND c.state IN ('succeeded', 'dead')
      AND NOT c.leave
    RETURNING t.id, t.kind, t.input, c.state, c.result, c.error, t.attempts, t.max_attempts,
              t.priority, t.worker_id, t.created_at, t.run_at, t.started_at, c.now,
              t.queue, t.concurrency_key, t.backoff_base_ms, t.backoff_cap_ms, t.timeout_ms,
              t.tenant,
              CASE WHEN c.state = 'dead'
                   THEN t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
                            'error', c.error, 'at', c.now, 'worker_id', t.worker_id))
                   ELSE t.errors END AS errors
),
archived AS (
    INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts,
                                priority, worker_id, created_at, run_at, started_at, completed_at,
                                queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms,
                                tenant, errors)
    SELECT * FROM finished
    RETURNING id, state, queue, concurrency_key
),
cached AS (
    INSERT INTO cache (key, value, created_at, expires_at)
    SELECT k.key, f.result, f.now, k.expires_at
    FROM unnest($8::text[], $9::uuid[], $10::timestamptz[]) AS k(key, id, expires_at)
    JOIN finished f ON f.id = k.id
    ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, created_at = excluded.created_at, expires_at = excluded.expires_at
),
retried AS (
    UPDATE tasks t SET state = 'queued', error = c.error, run_at = c.run_at,
                       lease_expires_at = NULL,
                       errors = t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
                           'error', c.error, 'at', c.now, 'worker_id', t.worker_id))
    FROM c
    WHERE t.id = c.id AND t.lease_token = c.token AND t.state = 'running' AND c.state = 'queued'
    RETURNING t.id
)
-- A scalar subquery, not EXISTS (which the planner may turn into a hash of
-- all of workflow_steps): one primary-key probe per row.
SELECT a.id, a.state, $11 AND (SELECT true FROM workflow_steps s WHERE s.task_id = a.id) IS NOT NULL AS step,
       a.concurrency_key IS NOT NULL OR a.queue IN (SELECT name FROM queues WHERE limited) AS limited
FROM archived a
UNION ALL SELECT id, 'queued', false, false FROM retried
UNION ALL SELECT c.id, 'step', true, false FROM c JOIN tasks t
        ON t.id = c.id AND t.lease_token = c.token AND t.state = 'running'
    WHERE c.leave
