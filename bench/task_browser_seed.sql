-- ROWS tasks for the task browser's bench (psql -v rows=N): 90% finished
-- (80% succeeded, 8% dead, 2% cancelled) in tasks_finished, 10% live
-- (8% queued, 1% running, 1% waiting) in tasks; six types, five queues,
-- forty tenants on half of them, created over the last seven days, ids
-- UUIDv7 of their creation time as weir makes them.
CREATE FUNCTION pg_temp.v7(at timestamptz) RETURNS uuid LANGUAGE sql AS $$
  SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid
$$;
CREATE TEMP TABLE seed AS
SELECT i,
       now() - interval '7 days' * (1 - i::float8 / :rows) AS created_at,
       (ARRAY['md5','sha256','argon2','sleep','noop','flaky'])[1 + i % 6] AS kind,
       (ARRAY['default','emails','reports','webhooks','billing'])[1 + i % 5] AS queue,
       CASE WHEN i % 2 = 0 THEN 'tenant_' || (i % 80) / 2 END AS tenant,
       CASE WHEN i % 100 < 80 THEN 'succeeded' WHEN i % 100 < 88 THEN 'dead'
            WHEN i % 100 < 90 THEN 'cancelled' WHEN i % 100 < 98 THEN 'queued'
            WHEN i % 100 < 99 THEN 'running' ELSE 'waiting' END AS state
FROM generate_series(1, :rows) AS i;
INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts,
    priority, worker_id, created_at, run_at, started_at, completed_at, queue, tenant)
SELECT pg_temp.v7(created_at), kind, jsonb_build_object('string', 'task ' || i), state,
       CASE WHEN state = 'succeeded' THEN jsonb_build_object('md5', md5(i::text)) END,
       CASE WHEN state = 'dead' THEN
            (ARRAY['partner API answered 503 for order ', 'SMTP timeout sending receipt ',
                   'connection reset by peer on invoice ', 'validation failed: missing field sku in '])[1 + i % 4] || i END,
       CASE WHEN state = 'dead' THEN 3 ELSE 1 END, 3, 0, 'worker-' || i % 8,
       created_at, created_at, created_at + interval '1 second',
       created_at + interval '1 second' * (1 + i % 600), queue, tenant
FROM seed WHERE state IN ('succeeded', 'dead', 'cancelled');
INSERT INTO tasks (id, kind, input, state, attempts, max_attempts, priority, worker_id,
    lease_expires_at, created_at, run_at, started_at, queue, tenant)
SELECT pg_temp.v7(created_at), kind, jsonb_build_object('string', 'task ' || i), state,
       CASE WHEN state = 'running' THEN 1 ELSE 0 END, 3, 0,
       CASE WHEN state = 'running' THEN 'worker-' || i % 8 END,
       CASE WHEN state = 'running' THEN now() + interval '1 day' END,
       created_at, now() + interval '1 day', CASE WHEN state = 'running' THEN now() END, queue, tenant
FROM seed WHERE state IN ('queued', 'running', 'waiting');
ANALYZE tasks; ANALYZE tasks_finished;
