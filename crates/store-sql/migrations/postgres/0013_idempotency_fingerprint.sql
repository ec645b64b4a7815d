-- A fingerprint of the request that took an idempotency key: a later request
-- under the key with another fingerprint is refused (422), not answered with
-- the first one's task. NULL for keys taken before.
ALTER TABLE idempotency_keys ADD COLUMN fingerprint TEXT;
