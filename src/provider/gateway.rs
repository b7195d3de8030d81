//! The HTTP gateway adapter (`[providers.<name>]`): a provider reached over
//! HTTP with reqwest.
//!
//! Wire protocol: `POST {base_url}/v1/charges` (with `"capture": false` for
//! an authorization), `/v1/captures`, `/v1/voids` or `/v1/refunds`, with
//! `{"amount", "currency", "payment_method", "reference"}` and, for the last
//! three, `"charge"`: the gateway's id of the charge they act on; headers
//! `Authorization: Bearer <secret>` and `Idempotency-Key: <transaction id>`.
//! A 2xx answers `{"id", "status": "succeeded" | "pending" | "failed", "error_code"?}`;
//! a 4xx answers `{"error": {"code", "message"}}` and is a hard decline; 408,
//! 429, 5xx, timeouts and connection errors are transient, retried with the
//! same idempotency key.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Operation, ProviderOutcome, ProviderRequest};
use crate::config::ProviderSettings;
use crate::domain::FailureCode;

/// One configured gateway.
#[derive(Clone, Debug)]
pub struct HttpGateway {
    base_url: String,
    secret: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    id: Option<String>,
    status: String,
    error_code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

fn failed(code: FailureCode, message: impl Into<String>) -> ProviderOutcome {
    ProviderOutcome::Failed { code, message: message.into() }
}

/// A gateway's decline code; codes payd does not know are card declines.
fn decline_code(code: Option<&str>) -> FailureCode {
    FailureCode::from_provider(code)
}

impl HttpGateway {
    /// A gateway from its settings: connect and request timeouts from `timeout`.
    pub fn new(settings: &ProviderSettings) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            base_url: settings.base_url.clone().unwrap_or_default().trim_end_matches('/').to_owned(),
            secret: settings.secret.clone(),
            client,
        })
    }

    /// One call; never an error: every failure is an outcome.
    pub async fn call(&self, req: &ProviderRequest) -> ProviderOutcome {
        let path = match req.operation {
            Operation::Purchase | Operation::Authorize => "charges",
            Operation::Capture => "captures",
            Operation::Void => "voids",
            Operation::Refund => "refunds",
        };
        let mut body = json!({
            "amount": req.amount,
            "currency": req.currency,
            "payment_method": req.token,
            "reference": req.idempotency_key,
        });
        if req.operation == Operation::Authorize {
            body["capture"] = json!(false);
        }
        if let Some(parent) = &req.parent_reference {
            body["charge"] = json!(parent);
        }
        let sent = self
            .client
            .post(format!("{}/v1/{path}", self.base_url))
            .bearer_auth(&self.secret)
            .header("Idempotency-Key", &req.idempotency_key)
            .json(&body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return failed(FailureCode::Timeout, "the gateway did not answer in time"),
            Err(e) => return failed(FailureCode::ProviderUnavailable, format!("could not reach the gateway: {e}")),
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return failed(FailureCode::Timeout, "the gateway did not answer in time"),
            Err(e) => return failed(FailureCode::ProviderUnavailable, format!("the gateway's answer broke off: {e}")),
        };
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
        {
            return failed(FailureCode::ProcessingError, format!("the gateway answered {status}"));
        }
        if status.is_client_error() {
            let err = serde_json::from_slice::<ErrorAnswer>(&body).ok().map(|a| a.error);
            let code = decline_code(err.as_ref().and_then(|e| e.code.as_deref()));
            // A 4xx is the gateway's final word, whatever code it names.
            let code = if code.is_transient() { FailureCode::CardDeclined } else { code };
            let message = err.and_then(|e| e.message).unwrap_or_else(|| format!("the gateway answered {status}"));
            return failed(code, message);
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(a) if a.status == "succeeded" => ProviderOutcome::Succeeded { reference: a.id.unwrap_or_default() },
            Ok(a) if a.status == "pending" => ProviderOutcome::Pending { reference: a.id.unwrap_or_default() },
            Ok(a) if a.status == "failed" => {
                failed(decline_code(a.error_code.as_deref()), a.message.unwrap_or_else(|| "declined".into()))
            }
            // An answer payd cannot read: the outcome is unknown, so retry
            // with the same key and let the gateway tell again.
            _ => failed(FailureCode::ProcessingError, format!("unreadable gateway answer ({status})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decline_codes_map_to_failure_codes() {
        assert_eq!(decline_code(Some("insufficient_funds")), FailureCode::InsufficientFunds);
        assert_eq!(decline_code(Some("expired_card")), FailureCode::ExpiredCard);
        assert_eq!(decline_code(Some("do_not_honor")), FailureCode::CardDeclined);
        assert_eq!(decline_code(None), FailureCode::CardDeclined);
    }
}
