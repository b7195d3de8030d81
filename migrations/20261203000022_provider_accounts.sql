-- Provider accounts (contract §12): a merchant's own credentials for a
-- provider such as Stripe, one per merchant, mode and provider. The
-- credentials are sealed with `secrets.master_key` (the account id is the
-- associated data) and wiped when the account is deleted.
CREATE TABLE provider_accounts (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    livemode     boolean NOT NULL,
    provider     text NOT NULL,
    credentials  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CHECK ((deleted_at IS NULL) = (credentials IS NOT NULL))
);
CREATE UNIQUE INDEX provider_accounts_one ON provider_accounts (merchant_id, livemode, provider)
    WHERE deleted_at IS NULL;

-- A method issued by a merchant's provider account is charged on it, and
-- only on it.
ALTER TABLE payment_methods ADD COLUMN provider_account_id text REFERENCES provider_accounts(id);

-- The provider's own code for a decline (Stripe's decline_code), beside
-- payd's error_code.
ALTER TABLE transactions ADD COLUMN provider_code text;

-- What the customer must do for a `requires_action` payment (3-D Secure).
ALTER TABLE payments ADD COLUMN next_action jsonb;
