-- The tenant of the API key that submitted a task (NULL: no keys, or a key
-- without one); such a key sees, cancels and retries only its tenant's tasks.
ALTER TABLE tasks ADD COLUMN tenant TEXT;
ALTER TABLE tasks_finished ADD COLUMN tenant TEXT;
