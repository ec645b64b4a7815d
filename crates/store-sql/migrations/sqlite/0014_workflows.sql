-- Workflows: each step is a task; a step with parents is 'waiting' until
-- they have ended. The counts on a workflow's row are kept by the
-- transaction that ends each step, so its status needs no scan of its steps.
CREATE TABLE workflows (
    id               TEXT    PRIMARY KEY,
    name             TEXT,
    tenant           TEXT,
    status           TEXT    NOT NULL,
    steps_total      INTEGER NOT NULL,
    -- Steps that have not ended.
    steps_live       INTEGER NOT NULL,
    steps_succeeded  INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX workflows_status ON workflows (status, id);
CREATE INDEX workflows_name ON workflows (name, id);
CREATE INDEX workflows_finished ON workflows (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE workflow_steps (
    task_id             TEXT    PRIMARY KEY,
    workflow_id         TEXT    NOT NULL,
    step_id             TEXT    NOT NULL,
    -- The step's place in the submitted list, for display.
    position            INTEGER NOT NULL,
    -- The parents' step ids, a JSON array.
    depends_on          TEXT    NOT NULL,
    on_parent_failure   TEXT    NOT NULL,
    with_parent_results INTEGER NOT NULL,
    -- Parents that have not ended.
    pending_parents     INTEGER NOT NULL,
    -- How the step ended, as its workflow counted it (NULL: not ended).
    ended               TEXT,
    -- The parent whose failure cancelled it, so that retrying that parent
    -- brings it back.
    cancelled_by        TEXT,
    UNIQUE (workflow_id, step_id)
);

CREATE TABLE workflow_edges (
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX workflow_edges_child ON workflow_edges (child);
