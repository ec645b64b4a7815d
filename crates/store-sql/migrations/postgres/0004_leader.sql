-- Leader leases: one row per role, held by one node until it expires. A row
-- with an expiry survives connection poolers, unlike session advisory locks.
CREATE TABLE leaders (
    name       TEXT        PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
