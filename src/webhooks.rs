//! Standard Webhooks signatures, both sides: how payd signs a delivery and
//! how a receiver written in Rust verifies one.
//!
//! A signature is `v1,` + base64(HMAC-SHA256(key,
//! "{webhook-id}.{webhook-timestamp}.{body}")), where the key is the
//! base64-decoded part of the secret after `whsec_`.
//!
//! ```
//! use axum::http::HeaderMap;
//! # let secret = payd::webhooks::generate_secret();
//! # let body = br#"{"id":"evt_1"}"#;
//! # let ts = time::OffsetDateTime::now_utc().unix_timestamp();
//! # let sig = payd::webhooks::sign(&secret, "evt_1", ts, body).unwrap();
//! # let mut headers = HeaderMap::new();
//! # headers.insert("webhook-id", "evt_1".parse().unwrap());
//! # headers.insert("webhook-timestamp", ts.to_string().parse().unwrap());
//! # headers.insert("webhook-signature", sig.parse().unwrap());
//! // `secret` is the endpoint's `whsec_…`; `body` the raw request body.
//! payd::webhooks::verify(&secret, &headers, body, std::time::Duration::from_secs(300))
//!     .expect("a genuine payd webhook");
//! ```

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The event as a webhook body (contract §6), also the body of its AMQP
/// copy (`amqp.publish_events`). `data` is the stored JSON, spliced in as
/// it is: parsing and writing it again would cost more than the rest of a
/// send.
pub(crate) fn event_body(id: &str, kind: &str, created: time::OffsetDateTime, livemode: bool, data: &str) -> String {
    let timestamp = crate::timefmt::format(created);
    format!(
        r#"{{"id":"{id}","object":"event","type":"{kind}","timestamp":"{timestamp}","livemode":{livemode},"data":{data}}}"#
    )
}

/// The prefix of every endpoint secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a new secret (the contract asks for at least 24).
pub const SECRET_BYTES: usize = 32;

/// A new endpoint secret, `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key inside a secret; `None` if it is not `whsec_` + base64.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()
}

/// One signature, `v1,<base64>`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = secret_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: the current secret's signature first,
/// then the previous secret's while it is still valid, space-separated.
pub fn signature_header(
    secret: &str,
    previous: Option<&str>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let mut header = sign(secret, msg_id, timestamp, body)?;
    if let Some(old) = previous.and_then(|p| sign(p, msg_id, timestamp, body)) {
        header.push(' ');
        header.push_str(&old);
    }
    Some(header)
}

/// Why a delivery does not verify.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The secret is not `whsec_` + base64.
    #[error("the secret is not a whsec_ secret")]
    BadSecret,
    /// A `webhook-*` header is missing or malformed.
    #[error("missing or malformed webhook-{0} header")]
    MissingHeader(&'static str),
    /// The timestamp is further from now than the tolerance (a replay?).
    #[error("the webhook-timestamp is outside the tolerance")]
    Stale,
    /// No signature in the header matches.
    #[error("no signature matches")]
    Mismatch,
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers.get(format!("webhook-{name}")).and_then(|v| v.to_str().ok()).ok_or(VerifyError::MissingHeader(name))
}

/// Verifies a payd (Standard Webhooks) delivery: any `v1,` signature of the
/// `webhook-signature` header must be the HMAC-SHA256 of
/// `"{webhook-id}.{webhook-timestamp}.{body}"` under the secret (compared in
/// constant time), and the timestamp within `tolerance` of now.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], tolerance: Duration) -> Result<(), VerifyError> {
    let key = secret_key(secret).ok_or(VerifyError::BadSecret)?;
    let id = header(headers, "id")?;
    let timestamp: i64 = header(headers, "timestamp")?.parse().map_err(|_| VerifyError::MissingHeader("timestamp"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(VerifyError::Stale);
    }
    let signatures = header(headers, "signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| VerifyError::BadSecret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let matches = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    if matches { Ok(()) } else { Err(VerifyError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn verifies_current_and_rotated_signatures_only() {
        let (new, old, other) = (generate_secret(), generate_secret(), generate_secret());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let body = b"{\"id\":\"evt_1\"}";
        let sig = signature_header(&new, Some(&old), "evt_1", now, body).unwrap();
        let tol = Duration::from_secs(300);
        assert_eq!(verify(&new, &headers("evt_1", now, &sig), body, tol), Ok(()));
        assert_eq!(verify(&old, &headers("evt_1", now, &sig), body, tol), Ok(()));
        assert_eq!(verify(&other, &headers("evt_1", now, &sig), body, tol), Err(VerifyError::Mismatch));
        assert_eq!(verify(&new, &headers("evt_2", now, &sig), body, tol), Err(VerifyError::Mismatch));
        assert_eq!(verify(&new, &headers("evt_1", now, &sig), b"{}", tol), Err(VerifyError::Mismatch));
        let stale = signature_header(&new, None, "evt_1", now - 301, body).unwrap();
        assert_eq!(verify(&new, &headers("evt_1", now - 301, &stale), body, tol), Err(VerifyError::Stale));
        assert_eq!(verify("nope", &headers("evt_1", now, &sig), body, tol), Err(VerifyError::BadSecret));
        assert_eq!(verify(&new, &HeaderMap::new(), body, tol), Err(VerifyError::MissingHeader("id")));
    }

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // The example from the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_long_and_decodable() {
        let s = generate_secret();
        assert!(s.starts_with(SECRET_PREFIX));
        assert_eq!(secret_key(&s).unwrap().len(), SECRET_BYTES);
        assert_ne!(generate_secret(), s);
        assert_eq!(secret_key("whsec_!!!"), None);
        assert_eq!(secret_key("sk_abc"), None);
    }

    #[test]
    fn rotated_secrets_sign_twice_new_first() {
        let (new, old) = (generate_secret(), generate_secret());
        let h = signature_header(&new, Some(&old), "evt_1", 10, b"{}").unwrap();
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts, [sign(&new, "evt_1", 10, b"{}").unwrap(), sign(&old, "evt_1", 10, b"{}").unwrap()]);
    }
}
