-- Rate-limit buckets shared by every api process (contract §11). UNLOGGED:
-- a bucket lost in a crash only means a fresh burst, and no WAL is written
-- for a request's count. The bucket is a hash of the key, never the key.
CREATE UNLOGGED TABLE rate_limits (
    bucket  bytea PRIMARY KEY,
    tat     timestamptz NOT NULL
);
