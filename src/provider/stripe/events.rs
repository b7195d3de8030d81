//! Stripe's webhooks to `POST /v1/provider_notifications/stripe/{provider_account_id}`:
//! the signature (`Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
//! of "{t}.{body}">` with the endpoint's `whsec_…` secret, five minutes of
//! tolerance) and the event.

use serde::Deserialize;
use serde_json::Value;

use crate::provider::notification::{self, SignatureError};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Checks `header` against `body` with the account's webhook secret. The
/// header is bounded and the MAC computed once, as for every provider.
pub fn verify(webhook_secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    notification::verify_with(webhook_secret, header, body, now, |s| hex::decode(s).ok())
}

/// The header Stripe would send for `body` at `timestamp`.
#[cfg(test)]
pub fn sign(webhook_secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(notification::mac_bytes(webhook_secret, timestamp, body)))
}

/// A Stripe event: its id (applied once), its type and its object.
#[derive(Clone, Debug, Deserialize)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    /// `payment_intent.succeeded`, `charge.refunded`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

/// The event's `data`.
#[derive(Clone, Debug, Deserialize)]
pub struct EventData {
    /// The object as it was when the event happened.
    pub object: Value,
}

/// Longest event id accepted (Stripe's are about 30 characters).
pub const EVENT_ID_MAX: usize = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_signatures_are_hex_and_verify_once() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign("whsec_abc", 1_000, body);
        assert!(header.starts_with("t=1000,v1="));
        assert_eq!(verify("whsec_abc", Some(&header), body, 1_100), Ok(()));
        // Stripe also sends a v0 entry (a test-mode signature); it is ignored.
        assert_eq!(verify("whsec_abc", Some(&format!("{header},v0=00")), body, 1_100), Ok(()));
        assert_eq!(verify("whsec_other", Some(&header), body, 1_100), Err(SignatureError::Mismatch));
        assert_eq!(verify("whsec_abc", Some(&header), body, 1_400), Err(SignatureError::Stale));
        assert_eq!(verify("whsec_abc", Some("t=1000,v1=zz"), body, 1_000), Err(SignatureError::Malformed));
    }
}
