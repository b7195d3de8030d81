//! The one error a use case (and so a request or a command) can end in, its
//! typed code, and its mapping to the contract's error body (§3). HTTP and
//! AMQP replies both render it from here. 5xx bodies say nothing internal;
//! their cause is logged with its chain.

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{FailureCode, Refusal};

/// Declares [`ErrorCode`]: each code once, with its wire spelling.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal ),+ $(,)?) => {
        /// Every error `code` payd answers, mapped once to the contract's strings.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
            /// 402 with `Prefer: wait`: the failed payment's own `error_code`.
            Payment(FailureCode),
        }

        impl ErrorCode {
            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Payment(code) => code.as_str(),
                }
            }

            #[cfg(test)]
            const ALL: &'static [ErrorCode] = &[$(Self::$variant),+];
        }
    };
}

error_codes! {
    /// A field is malformed or out of range.
    ParameterInvalid = "parameter_invalid",
    /// A required field is absent.
    ParameterMissing = "parameter_missing",
    /// A field the route does not take.
    ParameterUnknown = "parameter_unknown",
    /// The body could not be read.
    BodyInvalid = "body_invalid",
    /// The body is not JSON.
    JsonInvalid = "json_invalid",
    /// The query string is malformed.
    QueryInvalid = "query_invalid",
    /// Over the body limit.
    BodyTooLarge = "body_too_large",
    /// Not `application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    /// `Prefer` is not `wait=N` with N in range.
    PreferInvalid = "prefer_invalid",
    /// `Idempotency-Key` is empty, too long or not visible ASCII.
    IdempotencyKeyInvalid = "idempotency_key_invalid",
    /// The key was used with another request.
    IdempotencyKeyReused = "idempotency_key_reused",
    /// The key's first request has not finished.
    IdempotencyKeyInUse = "idempotency_key_in_use",
    /// Missing, malformed, unknown or revoked API key.
    InvalidApiKey = "invalid_api_key",
    /// The key kind may not do this.
    PermissionDenied = "permission_denied",
    /// Unknown id (or another tenant's).
    ResourceMissing = "resource_missing",
    /// No such route.
    RouteUnknown = "route_unknown",
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed",
    /// Too many requests for this key.
    RateLimited = "rate_limited",
    /// The payment's state forbids the operation.
    PaymentUnexpectedState = "payment_unexpected_state",
    /// The payment is canceled already.
    PaymentAlreadyCanceled = "payment_already_canceled",
    /// Everything captured is refunded or being refunded.
    ChargeAlreadyRefunded = "charge_already_refunded",
    /// More than what is left (or authorized).
    AmountTooLarge = "amount_too_large",
    /// The chargeback was reversed already.
    ChargebackAlreadyReversed = "chargeback_already_reversed",
    /// `external_key` taken by another payment of the merchant.
    ExternalKeyInUse = "external_key_in_use",
    /// A pending payment holds this `reference`.
    PendingPaymentExists = "pending_payment_exists",
    /// The provider does not take this currency.
    CurrencyNotSupported = "currency_not_supported",
    /// The payment method's provider is not configured.
    ProviderUnavailable = "provider_unavailable",
    /// A token that looks like a card number.
    CardNumberRefused = "card_number_refused",
    /// Only a scheduled attempt can be canceled.
    AttemptNotScheduled = "attempt_not_scheduled",
    /// The webhook URL is not allowed (scheme or address).
    UrlNotAllowed = "url_not_allowed",
    /// A charge of the payment may have succeeded: it cannot be canceled
    /// until the provider has said (contract §12).
    OutcomeUnknown = "outcome_unknown",
    /// Only a transaction whose outcome is unknown can be resolved.
    TransactionNotUnknown = "transaction_not_unknown",
    /// The merchant has an account at this provider in this mode already.
    ProviderAccountExists = "provider_account_exists",
    /// A provider that needs the merchant's own account, and it has none
    /// in this mode (contract §12).
    ProviderNotConfigured = "provider_not_configured",
    /// A recovery of this endpoint is running (contract §13).
    RecoveryRunning = "recovery_running",
    /// The merchant has `webhooks.max_endpoints` endpoints in this mode.
    EndpointLimitReached = "endpoint_limit_reached",
    /// A provider notification's signature does not verify.
    SignatureInvalid = "signature_invalid",
    /// A provider notification is malformed.
    NotificationInvalid = "notification_invalid",
    /// An AMQP command without `message_id`.
    MessageIdMissing = "message_id_missing",
    /// An AMQP command of an unknown type.
    CommandUnknown = "command_unknown",
    /// 402 with `Prefer: wait`, for a failed payment without an `error_code`.
    PaymentFailed = "payment_failed",
    /// payd's own fault.
    InternalError = "internal_error",
    /// A dependency is down.
    ServiceUnavailable = "service_unavailable",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub code: ErrorCode,
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
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), param: None, source: None, payment: None }
    }

    /// Names the input field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 409 `outcome_unknown`: the money may have moved, so nothing is
    /// canceled until the provider has said.
    pub fn outcome_unknown() -> Self {
        Self::new(
            409,
            ErrorCode::OutcomeUnknown,
            "a provider call of this payment may have succeeded; payd is asking the provider, try again later",
        )
    }

    /// 400 for a body (or command) with a NUL byte in `field`.
    pub fn nul(field: &str) -> Self {
        let message = if field.is_empty() {
            "the value must not contain NUL bytes".to_owned()
        } else {
            format!("{field} must not contain NUL bytes")
        };
        let e = Self::new(400, ErrorCode::ParameterInvalid, message);
        if field.is_empty() { e } else { e.with_param(field) }
    }

    /// 400 unless `value` is free of NUL bytes.
    pub fn check_nul(value: &serde_json::Value) -> Result<(), Self> {
        crate::domain::nul_field(value).map_or(Ok(()), |field| Err(Self::nul(&field)))
    }

    /// 400 `parameter_invalid` for `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::ParameterInvalid, message).with_param(param)
    }

    /// 400 `parameter_missing` for `param`.
    pub fn missing(param: &str) -> Self {
        Self::new(400, ErrorCode::ParameterMissing, format!("{param} is required")).with_param(param)
    }

    /// 400 `parameter_unknown` for `param`.
    pub fn unknown_field(param: &str) -> Self {
        Self::new(400, ErrorCode::ParameterUnknown, format!("unknown parameter: {param}")).with_param(param)
    }

    /// 404 `resource_missing`.
    pub fn not_found(what: &str) -> Self {
        Self::new(404, ErrorCode::ResourceMissing, format!("no such {what}"))
    }

    /// 404 `resource_missing` naming the input that names the missing object.
    pub fn not_found_param(message: impl Into<String>, param: &str) -> Self {
        Self::new(404, ErrorCode::ResourceMissing, message).with_param(param)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, ErrorCode::InvalidApiKey, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorCode::PermissionDenied, message)
    }

    /// 500 with a logged cause.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(500, ErrorCode::InternalError, "an internal error occurred; it has been logged");
        e.source = Some(cause.into());
        e
    }

    /// 503: a dependency is down.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(503, ErrorCode::ServiceUnavailable, "a dependency is unavailable; retry later");
        e.source = Some(cause.into());
        e
    }

    /// The contract's `type` for this status.
    pub fn kind(&self) -> &'static str {
        error_type(self.status)
    }

    /// 402: the payment a client waited for (`Prefer: wait`) failed; the
    /// code is the payment's `error_code` and the body carries the payment.
    pub fn payment_failed(code: Option<FailureCode>, message: String, payment: Value) -> Self {
        let mut e = Self::new(402, code.map_or(ErrorCode::PaymentFailed, ErrorCode::Payment), message);
        e.payment = Some(Box::new(payment));
        e
    }

    /// The `{"error": {...}}` body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "error": ErrorBody {
            kind: self.kind(),
            code: self.code.as_str(),
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
            Refusal::AlreadyCanceled => Self::new(409, ErrorCode::PaymentAlreadyCanceled, message),
            Refusal::NotCancelable(_) | Refusal::NotRefundable(_) | Refusal::NotCapturable(_) | Refusal::Processing => {
                Self::new(400, ErrorCode::PaymentUnexpectedState, message)
            }
            Refusal::FullyRefunded => Self::new(409, ErrorCode::ChargeAlreadyRefunded, message),
            Refusal::RefundTooLarge { .. } => Self::new(422, ErrorCode::AmountTooLarge, message).with_param("amount"),
            Refusal::CaptureTooLarge { .. } => Self::new(400, ErrorCode::AmountTooLarge, message).with_param("amount"),
            Refusal::AlreadyReversed => Self::new(409, ErrorCode::ChargebackAlreadyReversed, message),
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
    fn codes_have_distinct_snake_case_spellings() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
            assert!(seen.insert(s), "{s} twice");
        }
        assert_eq!(ErrorCode::Payment(FailureCode::CardDeclined).as_str(), "card_declined");
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
            assert_eq!(ApiError::new(status, ErrorCode::InternalError, "y").kind(), kind);
        }
    }
}
