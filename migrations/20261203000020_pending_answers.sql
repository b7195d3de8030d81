-- How many times a running attempt's provider answered "pending": the
-- janitor asks again after payments.pending_timeout, then on
-- payments.inquiry_schedule, and then stops (the transaction is left
-- unknown for an operator) instead of asking forever.
ALTER TABLE attempts ADD COLUMN pending_answers integer NOT NULL DEFAULT 0;
