-- When an endpoint's deliveries started failing without a success since;
-- past webhooks.disable_after it is disabled.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since timestamptz;
