-- no-transaction
-- The claim no longer reads the global due index.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_due;
