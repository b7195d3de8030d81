-- A provider call whose outcome payd could not learn (a timeout, a
-- connection lost after sending, a 5xx or unreadable answer) leaves its
-- transaction `unknown` (contract §12): the money may have moved.
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS transactions_status_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_status_check
    CHECK (status IN ('pending', 'unknown', 'succeeded', 'failed', 'canceled')) NOT VALID;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_status_check;
-- An inquiry is an attempt that asks the provider what became of the
-- transaction's earlier calls instead of calling again
-- (payments.inquiry_schedule, after the retries are used up).
ALTER TABLE attempts ADD COLUMN inquiry boolean NOT NULL DEFAULT false;
