-- How far a running task says it is, 0-100 (NULL: it does not say).
ALTER TABLE tasks ADD COLUMN progress INTEGER;
