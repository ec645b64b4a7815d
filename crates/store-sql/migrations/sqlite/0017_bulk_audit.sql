-- Bulk actions: one row each, its cursor moved by the transaction of each
-- batch, so a restart resumes after the last batch done.
CREATE TABLE bulk_actions (
    id          TEXT    PRIMARY KEY,
    action      TEXT    NOT NULL,
    -- The ids given, a JSON array newest first (NULL: it covers its filter).
    ids         TEXT,
    ids_count   INTEGER,
    filter      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    cursor      TEXT    NOT NULL,
    processed   INTEGER NOT NULL DEFAULT 0,
    changed     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    actor       TEXT    NOT NULL,
    holder      TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX bulk_actions_running ON bulk_actions (id) WHERE status = 'running';

-- Who changed what: every manage and admin action.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    tenant    TEXT,
    client_ip TEXT,
    action    TEXT    NOT NULL,
    target    TEXT,
    detail    TEXT,
    count     INTEGER
);
CREATE INDEX audit_log_action ON audit_log (action, id);
