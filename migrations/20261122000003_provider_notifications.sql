-- Provider notifications already processed: each id once per provider.
CREATE TABLE provider_notifications (
    provider     text NOT NULL,
    id           text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, id)
);
