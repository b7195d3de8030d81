//! Provider notifications: a provider that answered "pending" tells payd the
//! final outcome later, with a signed `POST /v1/provider_notifications/{provider}`.
//!
//! Signature header `payd-provider-signature: t=<unix seconds>,v1=<base64>`,
//! where the signature is HMAC-SHA256(provider secret, "{t}.{body}"). payd
//! refuses timestamps more than five minutes away and processes each
//! notification id once.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "payd-provider-signature";
/// Largest accepted distance between the signature's time and now, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// What a provider says happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Unique per notification; a repeated id is ignored.
    pub id: String,
    /// `<operation>.succeeded` or `<operation>.failed`, where operation is
    /// `charge`, `authorization`, `capture`, `void` or `refund`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The idempotency key of the call it answers (payd's transaction id).
    pub idempotency_key: String,
    /// The provider's reference.
    #[serde(default)]
    pub reference: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error_code: Option<String>,
    /// A human-readable reason.
    #[serde(default)]
    pub message: Option<String>,
}

/// Why a notification is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed signature header")]
    Malformed,
    #[error("the signature timestamp is outside the 5 minute tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn mac_bytes(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    mac(secret, timestamp, body).finalize().into_bytes().to_vec()
}

/// The header value for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let sig = STANDARD.encode(mac_bytes(secret, timestamp, body));
    format!("t={timestamp},v1={sig}")
}

/// Longest accepted signature header: a real one is about 60 bytes.
pub const MAX_HEADER_LEN: usize = 1024;
/// Most `v1=` entries accepted (several while a secret is rolled).
pub const MAX_SIGNATURES: usize = 5;

/// Checks a header against `body` at time `now`.
///
/// The header is bounded before anything is parsed and the MAC is computed
/// once, whatever the header holds: an unauthenticated caller controls it,
/// so its CPU cost must not grow with it. Each entry is compared in
/// constant time.
pub fn verify(secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    verify_with(secret, header, body, now, |s| STANDARD.decode(s).ok())
}

/// [`verify`] for a header whose `v1=` entries are encoded otherwise
/// (Stripe's `Stripe-Signature` has the same shape in hex).
pub fn verify_with(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
    decode: fn(&str) -> Option<Vec<u8>>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => {
                if signatures.len() == MAX_SIGNATURES {
                    return Err(SignatureError::Malformed);
                }
                signatures.extend(decode(s));
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body).finalize().into_bytes();
    // Every entry is compared (no early exit), each in constant time.
    let matched = signatures.iter().fold(subtle::Choice::from(0), |any, sig| any | expected.as_slice().ct_eq(sig));
    if bool::from(matched) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_body_and_time() {
        let body = br#"{"id":"ntf_1"}"#;
        let header = sign("s3cret", 1_000, body);
        assert_eq!(verify("s3cret", Some(&header), body, 1_010), Ok(()));
        assert_eq!(verify("other", Some(&header), body, 1_010), Err(SignatureError::Mismatch));
        assert_eq!(verify("s3cret", Some(&header), b"{}", 1_010), Err(SignatureError::Mismatch));
        assert_eq!(verify("s3cret", Some(&header), body, 1_000 + TOLERANCE_SECS + 1), Err(SignatureError::Stale));
        assert_eq!(verify("s3cret", None, body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify("s3cret", Some("t=1000"), body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify("s3cret", Some("v1=abc"), body, 1_000), Err(SignatureError::Malformed));
    }

    #[test]
    fn oversized_headers_are_refused_before_any_mac() {
        let body = br#"{"id":"ntf_1"}"#;
        let good = sign("s3cret", 1_000, body);
        let sig = good.split_once(",v1=").unwrap().1;
        // Five entries (a secret being rolled) pass; a sixth is refused.
        let five = format!("t=1000{}", format!(",v1={sig}").repeat(5));
        assert_eq!(verify("s3cret", Some(&five), body, 1_000), Ok(()));
        let six = format!("t=1000{}", ",v1=AAAA".repeat(5)) + &format!(",v1={sig}");
        assert_eq!(verify("s3cret", Some(&six), body, 1_000), Err(SignatureError::Malformed));
        let long = format!("{good},x={}", "a".repeat(MAX_HEADER_LEN));
        assert_eq!(verify("s3cret", Some(&long), body, 1_000), Err(SignatureError::Malformed));
    }
}
