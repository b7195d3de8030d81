-- no-transaction
-- As 20261203000012, for the one-pending-payment-per-reference rule.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS payments_pending_reference_by_mode
    ON payments (merchant_id, livemode, reference) WHERE reference IS NOT NULL AND status = 'pending';
