-- Recovery of an endpoint over a time window (contract §13): a tracked
-- background job. Its progress (phase and cursor) is committed with each
-- batch it re-queues, so a crash resumes where it stopped and nothing is
-- re-queued twice.
CREATE TABLE recoveries (
    id              text PRIMARY KEY,
    endpoint_id     text NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    since           timestamptz NOT NULL,
    until           timestamptz NOT NULL,
    include_missed  boolean NOT NULL,
    status          text NOT NULL CHECK (status IN ('running', 'completed')),
    deliveries      bigint NOT NULL,
    -- 0: failed deliveries; 1: missed events.
    phase           smallint NOT NULL DEFAULT 0,
    cursor_at       timestamptz,
    cursor_id       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
-- One running recovery per endpoint (409 recovery_running).
CREATE UNIQUE INDEX recoveries_running ON recoveries (endpoint_id) WHERE status = 'running';
