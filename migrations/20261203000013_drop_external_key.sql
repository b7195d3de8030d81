-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS payments_external_key;
