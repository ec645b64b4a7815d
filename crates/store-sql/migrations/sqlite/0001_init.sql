-- weir's embedded store. Times are Unix milliseconds (UTC).

CREATE TABLE requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id    TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    status     INTEGER NOT NULL,
    message    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX requests_node_id ON requests (node_id);

CREATE TABLE tasks (
    id               TEXT    PRIMARY KEY,
    kind             TEXT    NOT NULL,
    input            TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    result           TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    cache_key        TEXT,
    worker_id        TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    started_at       INTEGER,
    completed_at     INTEGER
);
-- The claim path reads only queued rows in claim order; finished rows stay out of it.
CREATE INDEX tasks_claim ON tasks (priority DESC, run_at, id) WHERE state = 'queued';
-- The rescuer reads only running rows by lease expiry.
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state = 'running';

CREATE TABLE cache (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE workers (
    id                TEXT    PRIMARY KEY,
    status            TEXT    NOT NULL,
    concurrency       INTEGER NOT NULL,
    active_tasks      INTEGER NOT NULL,
    current_task      TEXT,
    processed         INTEGER NOT NULL,
    failed            INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
);
