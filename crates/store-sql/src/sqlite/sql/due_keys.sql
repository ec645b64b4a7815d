-- Concurrency keys with due tasks: of queue ?2, or of the claimer's unlimited
-- queues (?3, JSON, NULL: any) when ?2 is NULL; of its types (?5). ?1 now, ?4 most keys.
SELECT DISTINCT concurrency_key FROM tasks
WHERE concurrency_key IS NOT NULL AND state = 'queued' AND run_at <= ?1
  AND (CASE WHEN ?2 IS NULL
            THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue
                             AND q.limited)
                 AND (?3 IS NULL OR queue IN (SELECT value FROM json_each(?3)))
            ELSE queue = ?2 END)
  AND (?5 IS NULL OR kind IN (SELECT value FROM json_each(?5)))
LIMIT ?4
