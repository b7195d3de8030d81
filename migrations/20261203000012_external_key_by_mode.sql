-- no-transaction
-- external_key and the one-pending-payment-per-reference rule hold per
-- merchant and mode (contract §11): a test payment never blocks a live one.
-- Each index is built concurrently under a new name, then swapped in under
-- the old one (the name is how a violation is recognised), one statement per
-- migration (PostgreSQL runs several in one implicit transaction, where
-- CONCURRENTLY is refused); each can run again.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS payments_external_key_by_mode
    ON payments (merchant_id, livemode, external_key) WHERE external_key IS NOT NULL;
