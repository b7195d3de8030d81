//! The one error a request or command can end in, and its mapping to the
//! contract's error body (§3). HTTP and AMQP replies both render it from here.
//! 5xx bodies say nothing internal; their cause is logged with its chain.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::Refusal;

/// The contract's error `type`, derived from the status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "payment_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error answer: status, machine code, message, and the input at fault.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (also used in AMQP replies).
    pub status: u16,
    /// Machine-readable code, e.g. `parameter_invalid`.
    pub code: Cow<'static, str>,
    /// Human-readable message.
    pub message: String,
    /// The one input field at fault, if any.
    pub param: Option<String>,
    /// The internal cause of a 5xx; logged, never shown.
    pub source: Option<anyhow::Error>,
    /// With 402 (`Prefer: wait`): the failed payment, as `error.payment`.
    pub payment: Option<Box<Value>>,
}

/// The serialized `{"error": {...}}` body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// One of the contract's types.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Machine-readable code.
    pub code: &'a str,
    /// Human-readable message.
    pub message: &'a str,
    /// The input at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<&'a str>,
}

impl ApiError {
    /// Any status, code and message.
    pub fn new(status: u16, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), param: None, source: None, payment: None }
    }

    /// Names the input field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400 `parameter_invalid` for `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, "parameter_invalid", message).with_param(param)
    }

    /// 400 `parameter_missing` for `param`.
    pub fn missing(param: &str) -> Self {
        Self::new(400, "parameter_missing", format!("{param} is required")).with_param(param)
    }

    /// 400 `parameter_unknown` for `param`.
    pub fn unknown_field(param: &str) -> Self {
        Self::new(400, "parameter_unknown", format!("unknown parameter: {param}")).with_param(param)
    }

    /// 404 `resource_missing`.
    pub fn not_found(what: &str) -> Self {
        Self::new(404, "resource_missing", format!("no such {what}"))
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "invalid_api_key", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "permission_denied", message)
    }

    /// 500 with a logged cause.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(500, "internal_error", "an internal error occurred; it has been logged");
        e.source = Some(cause.into());
        e
    }

    /// 503: a dependency is down.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(503, "service_unavailable", "a dependency is unavailable; retry later");
        e.source = Some(cause.into());
        e
    }

    /// The contract's `type` for this status.
    pub fn kind(&self) -> &'static str {
        error_type(self.status)
    }

    /// 402: the payment a client waited for (`Prefer: wait`) failed; the
    /// code is the payment's `error_code` and the body carries the payment.
    pub fn payment_failed(code: String, message: String, payment: Value) -> Self {
        let mut e = Self::new(402, code, message);
        e.payment = Some(Box::new(payment));
        e
    }

    /// The `{"error": {...}}` body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "error": ErrorBody {
            kind: self.kind(),
            code: &self.code,
            message: &self.message,
            param: self.param.as_deref(),
        }});
        if let Some(p) = &self.payment {
            body["error"]["payment"] = (**p).clone();
        }
        body
    }

    /// Logs a 5xx with its cause chain; 4xx are the client's business.
    pub fn log(&self) {
        if self.status >= 500 {
            match &self.source {
                Some(cause) => tracing::error!(status = self.status, error = format!("{cause:#}"), "request failed"),
                None => tracing::error!(status = self.status, code = %self.code, "request failed"),
            }
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => Self::unavailable(e),
            _ => Self::internal(e),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let message = r.to_string();
        match r {
            Refusal::AlreadyCanceled => Self::new(409, "payment_already_canceled", message),
            Refusal::NotCancelable(_) | Refusal::NotRefundable(_) | Refusal::NotCapturable(_) | Refusal::Processing => {
                Self::new(400, "payment_unexpected_state", message)
            }
            Refusal::FullyRefunded => Self::new(409, "charge_already_refunded", message),
            Refusal::RefundTooLarge { .. } => Self::new(422, "amount_too_large", message).with_param("amount"),
            Refusal::CaptureTooLarge { .. } => Self::new(400, "amount_too_large", message).with_param("amount"),
            Refusal::AlreadyReversed => Self::new(409, "chargeback_already_reversed", message),
            Refusal::Stale(_) => Self::internal(anyhow::anyhow!(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_contract_shape() {
        let e = ApiError::invalid("amount", "amount must be a positive integer");
        assert_eq!(
            e.body(),
            json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid",
                   "message": "amount must be a positive integer", "param": "amount"}})
        );
    }

    #[test]
    fn server_errors_hide_their_cause() {
        let e = ApiError::internal(anyhow::anyhow!("password=hunter2 in connection string"));
        let body = e.body().to_string();
        assert!(!body.contains("hunter2"));
        assert_eq!(e.kind(), "api_error");
        assert!(e.body()["error"].get("param").is_none());
    }

    #[test]
    fn types_follow_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "payment_error"),
            (403, "permission_error"),
            (404, "invalid_request_error"),
            (409, "invalid_request_error"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (503, "api_error"),
        ] {
            assert_eq!(ApiError::new(status, "x", "y").kind(), kind);
        }
    }
}
