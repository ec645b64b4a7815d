-- weir on PostgreSQL.
--
-- The queue keeps its hot table small: `tasks` holds only queued and running
-- tasks. A finished task (succeeded or dead) moves to `tasks_finished` in the
-- same statement that records its outcome, so the claim path never walks past
-- finished rows and VACUUM on `tasks` has little to do; `tasks_finished` is
-- trimmed by age (the cleaner).

CREATE TABLE requests (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id    TEXT        NOT NULL,
    method     TEXT        NOT NULL,
    path       TEXT        NOT NULL,
    status     INTEGER     NOT NULL,
    message    TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX requests_node_id ON requests (node_id);

CREATE TABLE tasks (
    id               UUID        PRIMARY KEY,
    kind             TEXT        NOT NULL,
    input            JSONB       NOT NULL,
    state            TEXT        NOT NULL CHECK (state IN ('queued', 'running')),
    error            TEXT,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    max_attempts     INTEGER     NOT NULL,
    priority         INTEGER     NOT NULL DEFAULT 0,
    cache_key        TEXT,
    worker_id        TEXT,
    lease_token      BIGINT      NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    run_at           TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ
) WITH (fillfactor = 80);
-- The claim query's order, over queued rows only.
CREATE INDEX tasks_claim ON tasks (priority DESC, run_at, id) WHERE state = 'queued';
-- The rescuer's scan, over running rows only.
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state = 'running';

CREATE TABLE tasks_finished (
    id           UUID        PRIMARY KEY,
    kind         TEXT        NOT NULL,
    input        JSONB       NOT NULL,
    state        TEXT        NOT NULL CHECK (state IN ('succeeded', 'dead')),
    result       JSONB,
    error        TEXT,
    attempts     INTEGER     NOT NULL,
    max_attempts INTEGER     NOT NULL,
    priority     INTEGER     NOT NULL,
    worker_id    TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    run_at       TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    completed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasks_finished_completed_at ON tasks_finished (completed_at);

CREATE TABLE cache (
    key        TEXT        PRIMARY KEY,
    value      JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE workers (
    id                TEXT        PRIMARY KEY,
    status            TEXT        NOT NULL,
    concurrency       INTEGER     NOT NULL,
    active_tasks      INTEGER     NOT NULL,
    current_task      TEXT,
    processed         BIGINT      NOT NULL,
    failed            BIGINT      NOT NULL,
    started_at        TIMESTAMPTZ NOT NULL,
    last_heartbeat_at TIMESTAMPTZ NOT NULL
);
