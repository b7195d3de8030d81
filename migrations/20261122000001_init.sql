-- payd schema. Postgres is the source of truth; RabbitMQ only carries work
-- that can be rebuilt from these rows.

CREATE TABLE merchants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 hashes: keys are long random strings, so a
-- fast hash is enough and a lookup is one index probe.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    merchant_id  text REFERENCES merchants(id),
    kind         text NOT NULL CHECK (kind IN ('secret', 'publishable', 'ops')),
    livemode     boolean NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    key_prefix   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK ((kind = 'ops') = (merchant_id IS NULL))
);

CREATE TABLE payments (
    id                   text PRIMARY KEY,
    number               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id          text NOT NULL REFERENCES merchants(id),
    livemode             boolean NOT NULL,
    amount               bigint NOT NULL CHECK (amount > 0),
    currency             text NOT NULL,
    capture              boolean NOT NULL DEFAULT true,
    amount_capturable    bigint NOT NULL DEFAULT 0 CHECK (amount_capturable >= 0),
    amount_captured      bigint NOT NULL DEFAULT 0 CHECK (amount_captured >= 0),
    amount_refunded      bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    status               text NOT NULL,
    payment_method_id    text NOT NULL,
    provider             text NOT NULL,
    method               text NOT NULL,
    description          text,
    reference            text,
    external_key         text,
    customer_id          text,
    metadata             jsonb NOT NULL DEFAULT '{}',
    tags                 text[] NOT NULL DEFAULT '{}',
    fee                  bigint NOT NULL DEFAULT 0,
    provider_reference   text,
    error_code           text,
    failure_message      text,
    attempt_count        integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    processed_at         timestamptz,
    canceled_at          timestamptz,
    cancellation_reason  text,
    CHECK (amount_refunded <= amount_captured),
    CHECK (amount_captured <= amount)
);
CREATE INDEX payments_list ON payments (merchant_id, livemode, created_at DESC, id DESC);
CREATE UNIQUE INDEX payments_external_key ON payments (merchant_id, external_key) WHERE external_key IS NOT NULL;
-- One pending payment per reference, enforced by the index so concurrent creates cannot race.
CREATE UNIQUE INDEX payments_pending_reference ON payments (merchant_id, reference)
    WHERE reference IS NOT NULL AND status = 'pending';

CREATE TABLE transactions (
    id                  text PRIMARY KEY,
    payment_id          text NOT NULL REFERENCES payments(id),
    type                text NOT NULL CHECK (type IN ('authorize', 'capture', 'purchase', 'void', 'refund', 'chargeback', 'chargeback_reversal')),
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    provider_reference  text,
    error_code          text,
    failure_message     text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_payment ON transactions (payment_id, created_at);

-- The refund object is a view of its refund transaction plus a reason.
CREATE TABLE refunds (
    id              text PRIMARY KEY,
    payment_id      text NOT NULL REFERENCES payments(id),
    transaction_id  text NOT NULL UNIQUE REFERENCES transactions(id),
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id, created_at);

-- One row per provider call. The claim (scheduled -> running, with a fresh
-- claim_token and a lease) is what makes redelivery, duplicate publishes,
-- concurrent workers and cancellation safe.
CREATE TABLE attempts (
    id              text PRIMARY KEY,
    payment_id      text NOT NULL REFERENCES payments(id),
    transaction_id  text NOT NULL REFERENCES transactions(id),
    number          integer NOT NULL CHECK (number > 0),
    status          text NOT NULL CHECK (status IN ('scheduled', 'running', 'succeeded', 'failed', 'canceled')),
    scheduled_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    error_code      text,
    claim_token     uuid,
    lease_until     timestamptz,
    -- When a message for this attempt was last written to the outbox; the
    -- scheduler re-enqueues a due attempt whose message went missing.
    enqueued_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (transaction_id, number)
);
CREATE INDEX attempts_payment ON attempts (payment_id, number);
CREATE INDEX attempts_due ON attempts (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX attempts_leases ON attempts (lease_until) WHERE status = 'running';

CREATE TABLE events (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    livemode     boolean NOT NULL,
    type         text NOT NULL,
    payment_id   text,
    data         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_list ON events (merchant_id, livemode, created_at DESC, id DESC);

CREATE TABLE webhook_endpoints (
    id                  text PRIMARY KEY,
    merchant_id         text NOT NULL REFERENCES merchants(id),
    livemode            boolean NOT NULL,
    url                 text NOT NULL,
    enabled_events      text[] NOT NULL,
    status              text NOT NULL CHECK (status IN ('enabled', 'disabled')),
    description         text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    secret              text NOT NULL,
    previous_secret     text,
    previous_secret_expires_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, livemode, created_at DESC);

-- One row per (event, endpoint subscribed and enabled when the event happened),
-- written in the event's transaction. next_attempt_at doubles as the claim
-- lease: a dispatcher pushes it forward before sending, so a dispatcher that
-- dies mid-send leaves a row that becomes due again.
CREATE TABLE webhook_deliveries (
    id                text PRIMARY KEY,
    event_id          text NOT NULL REFERENCES events(id),
    endpoint_id       text NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error        text,
    next_attempt_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);

-- The log of every send.
CREATE TABLE webhook_delivery_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    text NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    status_code    integer,
    error          text,
    duration_ms    integer NOT NULL,
    response_body  text
);
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (delivery_id, id);

-- Messages to publish, written in the same transaction as the state they
-- announce; the relay publishes them with confirms and deletes them.
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key results, kept 24 h.
CREATE TABLE idempotency_keys (
    merchant_id      text NOT NULL REFERENCES merchants(id),
    key              text NOT NULL,
    fingerprint      bytea NOT NULL,
    response_status  integer NOT NULL,
    response_body    jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, key)
);

-- The sandbox provider's own ledger. It stands for the provider's database,
-- which outlives any payd process: a charge made just before payd is killed
-- is still there, and the same idempotency key returns it instead of charging again.
CREATE TABLE sandbox_charges (
    idempotency_key    text PRIMARY KEY,
    operation          text NOT NULL,
    payment_method_id  text NOT NULL,
    amount             bigint NOT NULL,
    currency           text NOT NULL,
    outcome            jsonb NOT NULL,
    calls              integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now()
);
