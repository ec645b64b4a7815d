-- Batches: a running step may add steps to its own workflow; each added
-- step names the step that added it, so the same step adding the same ids
-- again (a retried attempt) is recognised and stores nothing twice.
ALTER TABLE workflow_steps ADD COLUMN added_by TEXT;
