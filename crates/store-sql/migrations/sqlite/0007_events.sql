-- Ingested events. `id` is the client's id (or one the API node made) and
-- makes a batch stored twice a no-op. "Latest first" is by the time an API
-- node received the event (buffered batches may be stored out of order),
-- then by `seq`, the order stored.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    body        TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);
