//! Shapes of the request and answer bodies of contract §12 and §13 that
//! are parsed or built field by field, for the OpenAPI document.

use serde::Serialize;
use utoipa::ToSchema;

/// `GET /v1/webhook_endpoints/{id}/stats` (contract §13).
#[derive(Serialize, ToSchema)]
pub struct EndpointStats {
    /// Always `webhook_endpoint_stats`.
    pub object: String,
    pub endpoint_id: String,
    /// `24h`.
    pub window: String,
    /// Deliveries created in the window, by their status.
    pub succeeded: i64,
    pub failed: i64,
    pub pending: i64,
    /// From the event's commit to the endpoint's 2xx.
    pub latency_ms: LatencyMs,
    /// Age of the oldest pending delivery, if any.
    pub oldest_pending_age_s: Option<i64>,
}

/// Latency percentiles in milliseconds (`null` without deliveries).
#[derive(Serialize, ToSchema)]
pub struct LatencyMs {
    pub p50: Option<i64>,
    pub p99: Option<i64>,
}

/// `POST /v1/webhook_endpoints/{id}/test`
#[derive(Serialize, ToSchema)]
pub struct TestSendBody {
    /// An event type; default `payment.succeeded`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// How the endpoint answered a test send.
#[derive(Serialize, ToSchema)]
pub struct TestSendResult {
    /// True for a 2xx.
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// `POST /v1/provider_accounts`
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"provider": "stripe", "credentials": {"secret_key": "sk_test_…", "webhook_secret": "whsec_…"}}))]
pub struct CreateProviderAccountBody {
    /// `stripe`.
    pub provider: String,
    pub credentials: StripeCredentials,
}

/// A Stripe account's keys; stored encrypted, never shown again.
#[derive(Serialize, ToSchema)]
pub struct StripeCredentials {
    /// `sk_test_…` / `sk_live_…` (or a restricted `rk_…` key) of the mode.
    pub secret_key: String,
    /// `whsec_…`: the signing secret of the Stripe webhook endpoint that
    /// points at `/v1/provider_notifications/stripe/{provider_account_id}`.
    pub webhook_secret: String,
}

/// `POST /v1/webhook_endpoints/{id}/recover`
#[derive(Serialize, ToSchema)]
pub struct RecoverBody {
    /// RFC 3339: the window's start (required).
    pub since: String,
    /// RFC 3339: the window's end (default now).
    pub until: Option<String>,
    /// Also the events it missed while disabled.
    pub include_missed: Option<bool>,
}
