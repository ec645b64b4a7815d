-- How often each cache entry is read, and the cache's hits and misses.
ALTER TABLE cache ADD COLUMN access_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cache ADD COLUMN last_accessed_at INTEGER;
CREATE TABLE cache_counters (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    hits   INTEGER NOT NULL,
    misses INTEGER NOT NULL
);
INSERT INTO cache_counters (id, hits, misses) VALUES (1, 0, 0);
