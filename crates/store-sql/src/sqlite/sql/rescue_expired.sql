-- Running tasks whose lease ended before ?1: dead when out of attempts, else
-- queued again; ?3 recorded as the attempt's error (at ?2, RFC 3339).
UPDATE tasks SET
    state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
    error = ?3,
    completed_at = CASE WHEN attempts >= max_attempts THEN ?1 ELSE NULL END,
    lease_expires_at = NULL,
    errors = json_insert(errors, '$[#]', json_object('attempt', attempts,
        'error', ?3, 'at', ?2, 'worker_id', worker_id))
WHERE state = 'running' AND lease_expires_at < ?1
RETURNING id, state
