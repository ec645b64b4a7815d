-- Bulk actions: one row each, its cursor moved by the transaction of each
-- batch, so a restart resumes after the last batch done.
CREATE TABLE bulk_actions (
    id          UUID        PRIMARY KEY,
    action      TEXT        NOT NULL,
    -- The ids given, newest first (NULL: it covers its filter).
    ids         UUID[],
    filter      JSONB       NOT NULL,
    status      TEXT        NOT NULL,
    cursor      UUID        NOT NULL,
    processed   BIGINT      NOT NULL DEFAULT 0,
    changed     BIGINT      NOT NULL DEFAULT 0,
    skipped     BIGINT      NOT NULL DEFAULT 0,
    actor       TEXT        NOT NULL,
    holder      TEXT,
    lease_until TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
CREATE INDEX bulk_actions_running ON bulk_actions (id) WHERE status = 'running';

-- Who changed what: every manage and admin action.
CREATE TABLE audit_log (
    id        BIGSERIAL   PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL,
    actor     TEXT        NOT NULL,
    tenant    TEXT,
    client_ip TEXT,
    action    TEXT        NOT NULL,
    target    TEXT,
    detail    JSONB,
    count     BIGINT
);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- The task browser's filters, each walked newest first by an index over
-- finished tasks (the live table stays lean for the claim path; its rows
-- are few next to the finished ones).
CREATE INDEX tasks_finished_state_id ON tasks_finished (state, id);
CREATE INDEX tasks_finished_kind_id ON tasks_finished (kind, id);
CREATE INDEX tasks_finished_queue_id ON tasks_finished (queue, id);
CREATE INDEX tasks_finished_tenant_id ON tasks_finished (tenant, id) WHERE tenant IS NOT NULL;
CREATE INDEX tasks_finished_completed_id ON tasks_finished (completed_at, id);
DROP INDEX tasks_finished_completed_at;
