-- NOTIFY inside a transaction serializes commits on a global lock held
-- through the WAL flush; status changes are now announced after the commit
-- by the code that makes them (src/db/notify.rs).
DROP TRIGGER IF EXISTS payments_status_notify ON payments;
DROP FUNCTION IF EXISTS payd_notify_payment_status();
