-- Creates are written in batches: one statement inserts the payments of
-- many concurrent requests, each made with its own API key. The audit
-- trigger cannot take the actor of a batch's rows from the transaction's
-- `payd.actor` setting, so a payment carries the actor that created it.
ALTER TABLE payments ADD COLUMN created_by text;

-- Inserts are audited once per statement, from the transition table, in
-- one set-based INSERT; the per-row PL/pgSQL diff stays for updates.
CREATE FUNCTION payd_audit_payment_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (payment_id, actor, action, changes)
    SELECT n.id,
           COALESCE(n.created_by, NULLIF(current_setting('payd.actor', true), ''), 'system'),
           COALESCE(NULLIF(current_setting('payd.action', true), ''), 'payment.create'),
           (SELECT jsonb_object_agg(j.key, jsonb_build_object('from', NULL, 'to', j.value))
              FROM jsonb_each(to_jsonb(n)) AS j
             WHERE jsonb_typeof(j.value) <> 'null'
               AND j.key NOT IN ('id', 'number', 'merchant_id', 'livemode', 'created_at', 'updated_at', 'created_by'))
      FROM new_rows AS n;
    RETURN NULL;
END
$$;

DROP TRIGGER payments_audit ON payments;
CREATE TRIGGER payments_audit AFTER UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payd_audit_payment();
CREATE TRIGGER payments_audit_insert AFTER INSERT ON payments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payd_audit_payment_insert();

-- The row trigger now runs for updates only, where `created_by` never
-- changes, so its diff needs no change for the new column.
