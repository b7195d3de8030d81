//! A Stripe account's credentials, sealed at rest with `secrets.master_key`
//! (the account id is the associated data, so a sealed value copied to
//! another account does not open).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::ProviderAccountId;
use crate::secretbox::{SecretBox, SecretError};

/// What `POST /v1/provider_accounts` takes for Stripe.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// `sk_test_…` / `sk_live_…` (or a restricted `rk_…` key).
    pub secret_key: String,
    /// `whsec_…`: the signing secret of the Stripe webhook endpoint that
    /// points at payd.
    pub webhook_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Why credentials are refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials.secret_key must be a Stripe secret key (sk_test_…, sk_live_… or rk_…)")]
    SecretKey,
    #[error("credentials.secret_key is a {0} key, but this is {1} mode")]
    Mode(&'static str, &'static str),
    #[error("credentials.webhook_secret must be the endpoint's signing secret (whsec_…)")]
    WebhookSecret,
}

/// Longest key or secret Stripe issues is about 110 characters.
const MAX_LEN: usize = 255;

impl Credentials {
    /// Checks the keys' shape and that the secret key is of the mode.
    pub fn check(&self, livemode: bool) -> Result<(), CredentialsError> {
        let key = self.secret_key.as_str();
        let printable = |s: &str| s.len() <= MAX_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let key_mode = ["sk_live_", "rk_live_"].iter().any(|p| key.starts_with(p));
        let test = ["sk_test_", "rk_test_"].iter().any(|p| key.starts_with(p));
        if !printable(key) || !(key_mode || test) || key.len() < 12 {
            return Err(CredentialsError::SecretKey);
        }
        if key_mode != livemode {
            let name = |live: bool| if live { "live" } else { "test" };
            return Err(CredentialsError::Mode(name(key_mode), name(livemode)));
        }
        if !printable(&self.webhook_secret) || !self.webhook_secret.starts_with("whsec_") {
            return Err(CredentialsError::WebhookSecret);
        }
        Ok(())
    }

    /// Sealed for the account's row.
    pub fn seal(&self, secrets: &SecretBox, account: &ProviderAccountId) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        secrets.seal(account.as_str(), &json)
    }

    /// Opens the account's sealed credentials.
    pub fn open(secrets: &SecretBox, account: &ProviderAccountId, sealed: &str) -> Result<Self, SecretError> {
        let json = secrets.open(account.as_str(), sealed)?;
        serde_json::from_str(&json).map_err(|_| SecretError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(key: &str, hook: &str) -> Credentials {
        Credentials { secret_key: key.into(), webhook_secret: hook.into() }
    }

    #[test]
    fn keys_are_checked_against_the_mode() {
        assert_eq!(creds("sk_test_abcdef123", "whsec_abc").check(false), Ok(()));
        assert_eq!(creds("sk_live_abcdef123", "whsec_abc").check(true), Ok(()));
        assert_eq!(creds("sk_live_abcdef123", "whsec_abc").check(false), Err(CredentialsError::Mode("live", "test")));
        assert_eq!(creds("pk_test_abcdef123", "whsec_abc").check(false), Err(CredentialsError::SecretKey));
        assert_eq!(creds("sk_test_abc def", "whsec_abc").check(false), Err(CredentialsError::SecretKey));
        assert_eq!(creds("sk_test_abcdef123", "abc").check(false), Err(CredentialsError::WebhookSecret));
    }

    #[test]
    fn sealed_credentials_open_only_for_their_account() {
        let secrets = SecretBox::development();
        let a = ProviderAccountId::generate();
        let sealed = creds("sk_test_abcdef123", "whsec_abc").seal(&secrets, &a);
        assert!(!sealed.contains("sk_test"));
        assert_eq!(Credentials::open(&secrets, &a, &sealed).unwrap().secret_key, "sk_test_abcdef123");
        assert!(Credentials::open(&secrets, &ProviderAccountId::generate(), &sealed).is_err());
        assert!(format!("{:?}", creds("sk_test_abcdef123", "whsec_abc")).contains("redacted"));
    }
}
