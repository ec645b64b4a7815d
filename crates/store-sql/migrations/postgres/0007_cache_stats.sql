-- How often each cache entry is read, and the cache's hits and misses.
ALTER TABLE cache ADD COLUMN access_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cache ADD COLUMN last_accessed_at TIMESTAMPTZ;
CREATE TABLE cache_counters (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    hits   BIGINT  NOT NULL,
    misses BIGINT  NOT NULL
);
INSERT INTO cache_counters (id, hits, misses) VALUES (1, 0, 0);
