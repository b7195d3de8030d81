-- The rest of the payment API: stored payment methods, chargebacks and
-- their reversals, and the audit log.

-- Payment methods (contract §5): a provider's token for a card or account,
-- never the card number itself. Deleting one hides it from new payments;
-- payments already made with it keep using it.
CREATE TABLE payment_methods (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    livemode     boolean NOT NULL,
    provider     text NOT NULL,
    type         text NOT NULL,
    token        text NOT NULL,
    -- `YYYY-MM`: the method works until the end of that month.
    expires_at   text,
    customer_id  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX payment_methods_list ON payment_methods (merchant_id, livemode, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

-- Chargebacks and refunds carry a reason; a reversal names the chargeback it
-- reverses, at most once.
ALTER TABLE transactions ADD COLUMN reason text;
ALTER TABLE transactions ADD COLUMN source_transaction_id text REFERENCES transactions(id);
CREATE UNIQUE INDEX transactions_one_reversal ON transactions (source_transaction_id)
    WHERE type = 'chargeback_reversal';

-- Every change of a payment, with who made it. Written by a trigger so no
-- code path can change a payment without leaving a line here. The actor and
-- action come from transaction-local settings (`payd.actor`, `payd.action`)
-- that the code sets; a change made without them is the system's.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id  text NOT NULL REFERENCES payments(id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    action      text NOT NULL,
    changes     jsonb NOT NULL
);
CREATE INDEX audit_log_payment ON audit_log (payment_id, id);

CREATE FUNCTION payd_audit_payment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) ELSE '{}'::jsonb END;
    new_row jsonb := to_jsonb(NEW);
    diff jsonb := '{}'::jsonb;
    k text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(new_row) LOOP
        IF k IN ('id', 'number', 'merchant_id', 'livemode', 'created_at', 'updated_at') THEN
            CONTINUE;
        END IF;
        IF (old_row -> k) IS DISTINCT FROM (new_row -> k)
           AND NOT (TG_OP = 'INSERT' AND jsonb_typeof(new_row -> k) = 'null') THEN
            diff := diff || jsonb_build_object(k, jsonb_build_object('from', old_row -> k, 'to', new_row -> k));
        END IF;
    END LOOP;
    IF diff = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    INSERT INTO audit_log (payment_id, actor, action, changes)
    VALUES (
        NEW.id,
        COALESCE(NULLIF(current_setting('payd.actor', true), ''), 'system'),
        COALESCE(NULLIF(current_setting('payd.action', true), ''),
                 CASE WHEN TG_OP = 'INSERT' THEN 'payment.create' ELSE 'payment.update' END),
        diff
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payd_audit_payment();

-- `Prefer: wait` listens here: one notification per status change, carrying
-- the payment id, so a waiting request wakes without polling.
CREATE FUNCTION payd_notify_payment_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payd_payment_status', NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_status_notify AFTER UPDATE OF status ON payments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payd_notify_payment_status();
