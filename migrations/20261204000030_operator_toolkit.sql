-- The operator toolkit (contract §14): holds that park scheduled attempts
-- during a provider outage, a reason on audit entries, and the indexes the
-- toolkit's filters and the scheduler's gauges read.

-- Holds: while one is active, every matching attempt that is scheduled or
-- comes due is parked as `held` instead of running. NULL filters match all.
CREATE TABLE holds (
    id           text PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('active', 'released')),
    provider     text,
    merchant_id  text REFERENCES merchants(id),
    error_code   text,
    reason       text NOT NULL,
    created_by   text NOT NULL,
    -- Attempts parked when the hold was created (more are parked as they come due).
    matched      integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    released_by  text,
    -- The window the held attempts were spread over, in seconds.
    release_over double precision,
    -- Attempts handed back to the schedule by the release.
    released     integer
);
-- The claim looks up the active holds for every attempt it takes: a tiny
-- partial index, empty in normal operation.
CREATE INDEX holds_active ON holds (created_at) WHERE status = 'active';
CREATE INDEX holds_list ON holds (created_at DESC, id DESC);

-- `held`: a hold parked the attempt; its release schedules it again.
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check
    CHECK (status IN ('scheduled', 'running', 'succeeded', 'failed', 'canceled', 'held')) NOT VALID;
ALTER TABLE attempts VALIDATE CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD COLUMN hold_id text REFERENCES holds(id);
-- The release finds its attempts, and the gauge counts them, by this index.
CREATE INDEX attempts_held ON attempts (hold_id, scheduled_at) WHERE status = 'held';
-- Bulk cancel walks scheduled attempts by when they are due (both due and
-- future ones, enqueued or not: the older partial indexes split those).
CREATE INDEX attempts_scheduled ON attempts (scheduled_at, id) WHERE status = 'scheduled';

-- The stuck-transaction list and the unknown gauges (count and oldest).
CREATE INDEX transactions_unknown ON transactions (updated_at, id) WHERE status = 'unknown';
-- The disabled-endpoints gauge.
CREATE INDEX webhook_endpoints_disabled ON webhook_endpoints (id) WHERE status = 'disabled';

-- Operators say why: the reason of an operator's action is kept with each
-- audit entry it causes (from the transaction-local `payd.reason`).
ALTER TABLE audit_log ADD COLUMN reason text;

CREATE OR REPLACE FUNCTION payd_audit_payment() RETURNS trigger LANGUAGE plpgsql AS $$
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
    INSERT INTO audit_log (payment_id, actor, action, changes, reason)
    VALUES (
        NEW.id,
        COALESCE(NULLIF(current_setting('payd.actor', true), ''), 'system'),
        COALESCE(NULLIF(current_setting('payd.action', true), ''),
                 CASE WHEN TG_OP = 'INSERT' THEN 'payment.create' ELSE 'payment.update' END),
        diff,
        NULLIF(current_setting('payd.reason', true), '')
    );
    RETURN NULL;
END
$$;
