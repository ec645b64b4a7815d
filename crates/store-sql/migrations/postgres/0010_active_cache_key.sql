-- A cacheable task (its result is cached under `cache_key`) is queued once
-- while one with the same input is queued or running: `tasks` holds only
-- those, so the key is unique in it. Older duplicates keep running, uncached.
UPDATE tasks SET cache_key = NULL
WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY cache_key ORDER BY id) AS n
                             FROM tasks WHERE cache_key IS NOT NULL) d
             WHERE d.n > 1);
CREATE UNIQUE INDEX tasks_active_cache_key ON tasks (cache_key) WHERE cache_key IS NOT NULL;
