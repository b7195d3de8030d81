-- Console sign-ins (contract §14). Only a hash of the session token is
-- kept: whoever reads this table cannot sign in with what it holds. A
-- session acts as the key it was opened with, so revoking (or deleting)
-- that key ends its sessions too.
CREATE TABLE console_sessions (
    token_hash  bytea PRIMARY KEY,
    key_id      text NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- Expired sessions are purged by expiry.
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
