-- no-transaction
-- The claim walks this index: first one probe per endpoint with pending
-- deliveries, then each endpoint's oldest due ones, so it reads what it
-- takes, never the backlog, whatever the statistics say. Built
-- concurrently: on a large table the migration does not block writers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_due_by_endpoint
    ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
