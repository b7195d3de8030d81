//! Stripe's HTTP API: form-encoded requests with the merchant's secret key,
//! a pinned `Stripe-Version` and an `Idempotency-Key`, and what each answer
//! means for the money.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::domain::FailureCode;

/// The API version payd is written against; Stripe renders every object
/// (and every webhook sent to an endpoint of this version) in it.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// Most of an answer payd reads: a PaymentIntent is a few KiB.
const ANSWER_MAX: usize = 256 * 1024;

/// What a request came to.
#[derive(Debug)]
pub enum Reply {
    /// 2xx: the object.
    Object(Value),
    /// 402: the card was declined. `provider_code` is Stripe's own
    /// (`decline_code`, else `code`).
    Declined { code: FailureCode, provider_code: Option<String>, message: String },
    /// Refused before any work (a connection that could not be made, 429,
    /// a 409 lock or idempotency conflict, `Stripe-Should-Retry: true`):
    /// safe to repeat with the same key.
    Transient(String),
    /// No answer payd can read although Stripe may have acted (a timeout,
    /// a connection lost after sending, a 5xx).
    Unknown(FailureCode, String),
    /// Any other 4xx: payd's or the account's configuration (a revoked
    /// key, a parameter Stripe refuses, an object in the wrong state).
    Refused { status: u16, code: Option<String>, message: String },
}

/// A client for one Stripe base URL.
#[derive(Clone, Debug)]
pub struct Api {
    base_url: String,
    client: reqwest::Client,
}

impl Api {
    /// A client whose calls time out after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), client })
    }

    /// `POST {path}` with a form body and an idempotency key.
    pub async fn post(&self, key: &str, path: &str, form: &[(&str, String)], idempotency_key: &str) -> Reply {
        let body = serde_urlencoded::to_string(form).unwrap_or_default();
        let req = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("Idempotency-Key", idempotency_key)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        self.send(key, req).await
    }

    /// `GET {path}`.
    pub async fn get(&self, key: &str, path: &str) -> Reply {
        self.send(key, self.client.get(format!("{}{path}", self.base_url))).await
    }

    async fn send(&self, key: &str, req: reqwest::RequestBuilder) -> Reply {
        let sent = req.bearer_auth(key).header("Stripe-Version", STRIPE_VERSION).send().await;
        let resp = match sent {
            Ok(r) => r,
            // Never connected: Stripe has not seen the request.
            Err(e) if e.is_connect() => {
                tracing::warn!(error = %e, "stripe: could not connect");
                return Reply::Transient("could not reach Stripe".into());
            }
            Err(e) if e.is_timeout() => {
                return Reply::Unknown(FailureCode::Timeout, "Stripe did not answer in time".into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "stripe: the connection broke");
                return Reply::Unknown(FailureCode::ProcessingError, "the connection to Stripe broke".into());
            }
        };
        let status = resp.status();
        let should_retry = resp.headers().get("stripe-should-retry").and_then(|v| v.to_str().ok()) == Some("true");
        let body = match read(resp).await {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        classify(status, should_retry, &body)
    }
}

async fn read(mut resp: reqwest::Response) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= ANSWER_MAX => body.extend_from_slice(&chunk),
            Ok(Some(_)) => {
                return Err(Reply::Unknown(FailureCode::ProcessingError, "Stripe's answer is too large".into()));
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => {
                return Err(Reply::Unknown(FailureCode::Timeout, "Stripe did not answer in time".into()));
            }
            Err(_) => return Err(Reply::Unknown(FailureCode::ProcessingError, "Stripe's answer broke off".into())),
        }
    }
}

/// What an answer says.
fn classify(status: StatusCode, should_retry: bool, body: &[u8]) -> Reply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status.is_success() {
        return match parsed {
            Some(v @ Value::Object(_)) => Reply::Object(v),
            _ => Reply::Unknown(FailureCode::ProcessingError, format!("unreadable Stripe answer ({status})")),
        };
    }
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str).map(str::to_owned);
    let message = field("message").unwrap_or_else(|| format!("Stripe answered {status}"));
    if status.is_server_error() {
        // Stripe's advice: the request may have been processed; repeat it
        // with the same idempotency key.
        return Reply::Unknown(FailureCode::ProcessingError, format!("Stripe answered {status}"));
    }
    if status == StatusCode::PAYMENT_REQUIRED {
        let provider_code = field("decline_code").or_else(|| field("code"));
        return Reply::Declined { code: decline(provider_code.as_deref()), provider_code, message };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::CONFLICT || should_retry {
        return Reply::Transient(message);
    }
    Reply::Refused { status: status.as_u16(), code: field("code"), message }
}

/// payd's code for one of Stripe's decline codes; the others are card
/// declines (the raw code is kept as `provider_code`).
pub fn decline(code: Option<&str>) -> FailureCode {
    match code {
        Some("insufficient_funds") => FailureCode::InsufficientFunds,
        Some("expired_card") => FailureCode::ExpiredCard,
        // Stripe's own trouble, not the card's.
        Some("processing_error") => FailureCode::ProcessingError,
        _ => FailureCode::CardDeclined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        classify(StatusCode::from_u16(status).unwrap(), false, body.as_bytes())
    }

    #[test]
    fn answers_are_classified_by_what_may_have_happened() {
        assert!(matches!(reply(200, r#"{"id":"pi_1"}"#), Reply::Object(_)));
        assert!(matches!(reply(200, "<html>"), Reply::Unknown(..)));
        assert!(matches!(reply(500, "{}"), Reply::Unknown(..)));
        assert!(matches!(reply(503, ""), Reply::Unknown(..)));
        assert!(matches!(reply(429, r#"{"error":{"type":"rate_limit_error"}}"#), Reply::Transient(_)));
        assert!(matches!(reply(409, r#"{"error":{"type":"idempotency_error"}}"#), Reply::Transient(_)));
        let refused = reply(401, r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key"}}"#);
        assert!(matches!(refused, Reply::Refused { status: 401, .. }));
        assert!(matches!(classify(StatusCode::BAD_REQUEST, true, b"{}"), Reply::Transient(_)));
    }

    #[test]
    fn declines_keep_stripes_code() {
        let body = r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"no"}}"#;
        match reply(402, body) {
            Reply::Declined { code, provider_code, message } => {
                assert_eq!(code, FailureCode::InsufficientFunds);
                assert_eq!(provider_code.as_deref(), Some("insufficient_funds"));
                assert_eq!(message, "no");
            }
            other => panic!("{other:?}"),
        }
        match reply(402, r#"{"error":{"type":"invalid_request_error","code":"card_declined"}}"#) {
            Reply::Declined { code, provider_code, .. } => {
                assert_eq!(code, FailureCode::CardDeclined);
                assert_eq!(provider_code.as_deref(), Some("card_declined"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decline(Some("expired_card")), FailureCode::ExpiredCard);
        assert_eq!(decline(Some("do_not_honor")), FailureCode::CardDeclined);
        assert_eq!(decline(None), FailureCode::CardDeclined);
    }
}
