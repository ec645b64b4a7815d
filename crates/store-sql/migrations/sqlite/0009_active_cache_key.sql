-- A cacheable task (its result is cached under `cache_key`) is queued once
-- while one with the same input is queued or running. Older duplicates keep
-- running, uncached.
UPDATE tasks SET cache_key = NULL
WHERE state IN ('queued', 'running') AND cache_key IS NOT NULL
  AND id NOT IN (SELECT MIN(id) FROM tasks WHERE state IN ('queued', 'running')
                 AND cache_key IS NOT NULL GROUP BY cache_key);
CREATE UNIQUE INDEX tasks_active_cache_key ON tasks (cache_key)
    WHERE cache_key IS NOT NULL AND state IN ('queued', 'running');
