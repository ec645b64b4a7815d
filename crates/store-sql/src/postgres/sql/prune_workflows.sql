-- Up to $2 workflows finished before $1, with their steps and edges. Their
-- tasks are pruned by their own age, as every task is.
WITH w AS (
    SELECT id FROM workflows WHERE finished_at < $1 ORDER BY finished_at LIMIT $2
),
steps AS (
    DELETE FROM workflow_steps s USING w WHERE s.workflow_id = w.id RETURNING s.task_id
),
edges AS (
    DELETE FROM workflow_edges e USING steps WHERE e.child = steps.task_id
),
gone AS (
    DELETE FROM workflows f USING w WHERE f.id = w.id RETURNING 1
)
SELECT COUNT(*) FROM gone
