-- Idempotency keys of event batches: the fingerprint of the batch that took
-- a key, so the same key with another batch is refused (422) instead of its
-- events being dropped as repeats. Pruned with idempotency_keys.
CREATE TABLE event_keys (
    key         TEXT        PRIMARY KEY,
    fingerprint TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX event_keys_created_at ON event_keys (created_at);
