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

/// The document's `webhooks` (OpenAPI 3.1): one `POST` per event type, with
/// the event as body and the Standard Webhooks headers, so a receiver can
/// generate its types from the same document as the API.
pub fn webhooks() -> serde_json::Value {
    let header = |name: &str, description: &str| {
        serde_json::json!({"name": name, "in": "header", "required": true, "description": description,
            "schema": {"type": "string"}})
    };
    let parameters = [
        header("webhook-id", "The event id, the same on every retry: dedupe on it."),
        header("webhook-timestamp", "Unix seconds of this attempt."),
        header(
            "webhook-signature",
            "`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`; several, space-separated, while a secret is rotated.",
        ),
    ];
    let hooks: serde_json::Map<String, serde_json::Value> = crate::domain::EventType::ALL
        .iter()
        .map(|kind| {
            let operation = serde_json::json!({"post": {
                "operationId": format!("webhook_{}", kind.as_str().replace('.', "_")),
                "summary": format!("The `{}` event", kind.as_str()),
                "description": "Keep the highest `data.object.sequence` per payment; events arrive at least once and not in order.",
                "parameters": parameters,
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Event"}}}},
                "responses": {"200": {"description": "Any 2xx: delivered. Anything else is retried."}},
            }});
            (kind.as_str().to_owned(), operation)
        })
        .collect();
    serde_json::Value::Object(hooks)
}
