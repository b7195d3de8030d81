-- A per-endpoint throttle (contract §13): deliveries per second, held
-- across all dispatcher processes together (a shared bucket in
-- rate_limits).
ALTER TABLE webhook_endpoints ADD COLUMN rate_limit integer CHECK (rate_limit > 0);
