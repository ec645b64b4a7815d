-- Idempotency keys: the same key within its window returns the same task.
CREATE TABLE idempotency_keys (
    key        TEXT    PRIMARY KEY,
    task_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
