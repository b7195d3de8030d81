//! `[providers.<name>]`: HTTP gateways, the sandbox's notifications, and
//! Stripe's address.

use std::time::Duration;

use serde::Deserialize;

use super::parse::duration;

/// `[providers.<name>]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The gateway's base URL (HTTP gateways; not for `sandbox`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The gateway's bearer token (for the sandbox, the key of its
    /// notifications' signatures). Not for `stripe`, whose keys belong to
    /// merchants (`/v1/provider_accounts`).
    #[serde(default)]
    pub secret: String,
    /// HTTP gateways: the key of the gateway's notifications' signatures,
    /// never the bearer `secret`; without it the gateway's notifications
    /// are refused.
    #[serde(default)]
    pub notification_secret: Option<String>,
    /// Per-call timeout (HTTP gateways).
    #[serde(default = "default_provider_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Sandbox only: where it posts notifications; empty = this process's API.
    #[serde(default)]
    pub notify_url: String,
    /// ISO 4217 codes the provider takes, comma-separated; empty = every one.
    /// A payment in another currency is refused with 422.
    #[serde(default)]
    pub currencies: String,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets never reach a log line.
        f.debug_struct("ProviderSettings")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .field("notification_secret", &self.notification_secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("notify_url", &self.notify_url)
            .field("currencies", &self.currencies)
            .finish()
    }
}

impl ProviderSettings {
    /// True when the provider takes payments in `code` (upper case).
    pub fn supports(&self, code: &str) -> bool {
        self.currencies.trim().is_empty() || self.currencies.split(',').any(|c| c.trim().eq_ignore_ascii_case(code))
    }
}

fn default_provider_timeout() -> Duration {
    Duration::from_secs(10)
}
