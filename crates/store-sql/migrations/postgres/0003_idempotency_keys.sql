-- Idempotency keys: the same key within its window returns the same task.
CREATE TABLE idempotency_keys (
    key        TEXT        PRIMARY KEY,
    task_id    UUID        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
