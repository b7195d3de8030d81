-- A claimed delivery's lease is a column of its own that no index holds,
-- so taking and giving back a lease are HOT updates (no index entry is
-- written); the table's pages keep a fifth free for them. Deliveries are
-- claimed per endpoint, oldest first (the next two migrations).
ALTER TABLE webhook_deliveries ADD COLUMN lease_until timestamptz;
ALTER TABLE webhook_deliveries SET (fillfactor = 80);
