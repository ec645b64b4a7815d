-- Ingested events. `id` is the client's id (or a time-ordered one the API
-- node made) and makes a batch stored twice a no-op. "Latest first" is by the
-- time an API node received the event (buffered batches may be stored out of
-- order), then by id. No sequence column: each index costs ingest speed.
CREATE TABLE events (
    id          TEXT        PRIMARY KEY,
    body        JSONB       NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);
