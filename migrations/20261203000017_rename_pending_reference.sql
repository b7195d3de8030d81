-- no-transaction
ALTER INDEX IF EXISTS payments_pending_reference_by_mode RENAME TO payments_pending_reference;
