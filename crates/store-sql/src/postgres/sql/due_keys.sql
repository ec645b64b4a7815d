-- Concurrency keys with due tasks: of queue $2, or of the claimer's unlimited
-- queues ($3, NULL: any) when $2 is NULL; of its types ($5). $1 now, $4 most keys.
SELECT DISTINCT concurrency_key FROM tasks
WHERE concurrency_key IS NOT NULL AND state = 'queued' AND run_at <= $1
  AND (CASE WHEN $2::text IS NULL
            THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue
                             AND q.limited)
                 AND ($3::text[] IS NULL OR queue = ANY($3))
            ELSE queue = $2 END)
  AND ($5::text[] IS NULL OR kind = ANY($5))
LIMIT $4
