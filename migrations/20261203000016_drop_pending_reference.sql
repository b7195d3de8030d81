-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS payments_pending_reference;
