-- no-transaction
-- Stripe's webhooks name the PaymentIntent, not payd's transaction: the
-- charge they settle is found by its provider reference.
CREATE INDEX CONCURRENTLY IF NOT EXISTS transactions_provider_reference
    ON transactions (provider_reference) WHERE provider_reference IS NOT NULL;
