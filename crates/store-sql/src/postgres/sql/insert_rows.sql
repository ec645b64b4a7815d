-- A batch of submissions in one statement. A row whose id is stored (live,
-- or finished in tasks_finished) or whose cache key a live task holds is
-- skipped; with $17 (from_cache), so is one whose cache key has a result
-- cached and unexpired. Each row's state is $15's ('queued', or 'waiting'
-- for a workflow step with parents); $16 its trace context. Returns the ids
-- inserted.
INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key,
                   created_at, run_at, queue, concurrency_key, backoff_base_ms,
                   backoff_cap_ms, timeout_ms, tenant, trace_context)
SELECT id, kind, input, state, max_attempts, priority, cache_key, created_at, run_at,
       queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant,
       trace_context
FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::int[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
            $11::bigint[], $12::bigint[], $13::bigint[], $14::text[], $15::text[],
            $16::text[])
    AS t(id, kind, input, max_attempts, priority, cache_key, created_at, run_at,
         queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, state,
         trace_context)
-- A scalar subquery, not NOT EXISTS: the planner would turn that into an
-- anti-join and may hash the whole of tasks_finished for every batch; this
-- stays one primary-key probe per row.
WHERE (SELECT 1 FROM tasks_finished f WHERE f.id = t.id) IS NULL
  AND (NOT $17::bool OR t.cache_key IS NULL
       OR (SELECT 1 FROM cache c WHERE c.key = t.cache_key AND c.expires_at > t.created_at) IS NULL)
ON CONFLICT DO NOTHING RETURNING id
