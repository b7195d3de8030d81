-- Scheduled retries and operator cancellation.

-- The sandbox counts calls per idempotency key before it has a final outcome
-- (transient failures are not charges), so its outcome starts empty.
ALTER TABLE sandbox_charges ALTER COLUMN outcome DROP NOT NULL;

-- Why an operator (or the merchant) canceled a scheduled attempt.
ALTER TABLE attempts ADD COLUMN cancellation_reason text;

CREATE INDEX attempts_status_created ON attempts (status, created_at DESC);
