-- no-transaction
ALTER INDEX IF EXISTS payments_external_key_by_mode RENAME TO payments_external_key;
