-- A failed attempt: queued again for ?3 (when not NULL) or dead at ?4; the
-- error ?2 appended to the task's history. Fenced by lease token ?8.
UPDATE tasks SET state = ?1, error = ?2, run_at = COALESCE(?3, run_at),
                 completed_at = ?4, lease_expires_at = NULL,
                 errors = json_insert(errors, '$[#]', json_object('attempt', attempts,
                     'error', ?5, 'at', ?6, 'worker_id', worker_id))
WHERE id = ?7 AND lease_token = ?8 AND state = 'running'
