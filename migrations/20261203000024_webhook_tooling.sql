-- Webhook tooling (contract §13).

-- Endpoint health: when and why an endpoint was disabled.
ALTER TABLE webhook_endpoints ADD COLUMN disabled_at timestamptz;
ALTER TABLE webhook_endpoints ADD COLUMN disabled_reason text
    CHECK (disabled_reason IN ('gone', 'failing', 'manual'));

-- Ordering without FIFO: every change of a payment increments its sequence
-- in the statement that makes it, whichever path (a group commit included)
-- wrote it; the payment object and every payment.* event carry it.
ALTER TABLE payments ADD COLUMN sequence bigint NOT NULL DEFAULT 1;
CREATE FUNCTION payments_next_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.sequence := OLD.sequence + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER payments_sequence BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_next_sequence();
