//! The HTTP gateway adapter (`[providers.<name>]`): a provider reached over
//! HTTP with reqwest.
//!
//! Wire protocol: `POST {base_url}/v1/charges` (with `"capture": false` for
//! an authorization), `/v1/captures`, `/v1/voids` or `/v1/refunds`, with
//! `{"amount", "currency", "payment_method", "reference"}` and, for the last
//! three, `"charge"`: the gateway's id of the charge they act on; headers
//! `Authorization: Bearer <secret>` and `Idempotency-Key: <transaction id>`.
//! A 2xx answers `{"id", "status": "succeeded" | "pending" | "failed", "error_code"?}`;
//! a 4xx answers `{"error": {"code", "message"}}`: a decline when it names a
//! decline code (or is a 402), else a configuration error (`provider_error`).
//! A connection that could not be made, a 408 and a 429 are transient
//! failures (nothing was done); a timeout, a connection lost after sending,
//! a 5xx or an unreadable answer are unknown outcomes (it may have been
//! done). Both are retried with the same idempotency key; an unknown one is
//! then asked about: `GET {base_url}/v1/operations/{idempotency_key}` → 200
//! with the body the call would have answered, or 404 if the gateway never
//! received it.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Inquiry, Operation, ProviderOutcome, ProviderRequest};
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
            // Never connected: the gateway has not seen the call.
            Err(e) if e.is_connect() => {
                tracing::warn!(error = %e, "could not reach the gateway");
                return failed(FailureCode::ProviderUnavailable, "could not reach the provider");
            }
            Err(e) if e.is_timeout() => {
                return ProviderOutcome::unknown(FailureCode::Timeout, "the gateway did not answer in time");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the connection to the gateway broke");
                return ProviderOutcome::unknown(FailureCode::ProcessingError, "the connection to the provider broke");
            }
        };
        let status = resp.status();
        let body = match read(resp).await {
            Ok(b) => b,
            Err(outcome) => return outcome,
        };
        answer(status, &body)
    }

    /// Asks what became of the call with `req`'s idempotency key.
    pub async fn inquire(&self, req: &ProviderRequest) -> Inquiry {
        let sent = self
            .client
            .get(format!("{}/v1/operations/{}", self.base_url, req.idempotency_key))
            .bearer_auth(&self.secret)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the gateway could not be asked");
                return Inquiry::Unknown("the provider could not be asked".into());
            }
        };
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Inquiry::NotReceived;
        }
        if status != StatusCode::OK {
            return Inquiry::Unknown(format!("the gateway's inquiry answered {status}"));
        }
        match read(resp).await {
            Ok(body) => match answer(status, &body) {
                ProviderOutcome::Unknown { message, .. } => Inquiry::Unknown(message),
                outcome => Inquiry::Answered(outcome),
            },
            Err(_) => Inquiry::Unknown("the gateway's inquiry answer broke off".into()),
        }
    }
}

impl super::Provider for HttpGateway {
    fn call<'a>(&'a self, req: &'a ProviderRequest) -> futures_util::future::BoxFuture<'a, ProviderOutcome> {
        Box::pin(HttpGateway::call(self, req))
    }

    fn inquire<'a>(&'a self, req: &'a ProviderRequest) -> futures_util::future::BoxFuture<'a, Inquiry> {
        Box::pin(HttpGateway::inquire(self, req))
    }
}

/// Most of a gateway's answer payd reads.
const ANSWER_MAX: usize = 64 * 1024;

/// The answer's body, at most [`ANSWER_MAX`]; a body that breaks off is an
/// unknown outcome (the call was received).
async fn read(mut resp: reqwest::Response) -> Result<Vec<u8>, ProviderOutcome> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= ANSWER_MAX => body.extend_from_slice(&chunk),
            Ok(Some(_)) => {
                return Err(ProviderOutcome::unknown(
                    FailureCode::ProcessingError,
                    "the gateway's answer is too large",
                ));
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => {
                return Err(ProviderOutcome::unknown(FailureCode::Timeout, "the gateway did not answer in time"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the gateway's answer broke off");
                let message = "the provider's answer broke off";
                return Err(ProviderOutcome::unknown(FailureCode::ProcessingError, message));
            }
        }
    }
}

/// What an answer of the gateway says.
fn answer(status: StatusCode, body: &[u8]) -> ProviderOutcome {
    if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
        // Refused before any work: retried with the same key.
        return failed(FailureCode::ProviderUnavailable, format!("the gateway answered {status}"));
    }
    if status.is_server_error() {
        return ProviderOutcome::unknown(FailureCode::ProcessingError, format!("the gateway answered {status}"));
    }
    if status.is_client_error() {
        let err = serde_json::from_slice::<ErrorAnswer>(body).ok().map(|a| a.error);
        let named = err.as_ref().and_then(|e| e.code.as_deref()).and_then(FailureCode::parse);
        let decline = named.filter(|c| c.is_decline());
        let code = match (status.as_u16(), decline) {
            (_, Some(code)) => code,
            // Not the card: payd's or the gateway's configuration.
            (401 | 403 | 404 | 409 | 422, None) => {
                tracing::error!(%status, "the gateway refused the call as misconfigured");
                crate::observe::provider_error(status.as_u16());
                FailureCode::ProviderError
            }
            // Any other 4xx is the gateway's final word on the card.
            _ => FailureCode::CardDeclined,
        };
        let message = err.and_then(|e| e.message).unwrap_or_else(|| format!("the gateway answered {status}"));
        return failed(code, message);
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(a) if a.status == "succeeded" => ProviderOutcome::Succeeded { reference: a.id.unwrap_or_default() },
        Ok(a) if a.status == "pending" => ProviderOutcome::Pending { reference: a.id.unwrap_or_default() },
        Ok(a) if a.status == "failed" => {
            failed(decline_code(a.error_code.as_deref()), a.message.unwrap_or_else(|| "declined".into()))
        }
        // An answer payd cannot read: the call may have been done.
        _ => ProviderOutcome::unknown(FailureCode::ProcessingError, format!("unreadable gateway answer ({status})")),
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
