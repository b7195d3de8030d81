//! Shapes of the request and answer bodies of contract §12, §13 and §14 that
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

/// `POST /v1/attempts/{id}/retry_now`
#[derive(Serialize, ToSchema)]
pub struct RetryNowBody {
    /// Why (kept in the audit log).
    pub reason: Option<String>,
}

/// `POST /v1/attempts/{id}/reschedule`
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"at": "2026-12-04T18:00:00Z", "reason": "provider maintenance until 18:00"}))]
pub struct RescheduleBody {
    /// RFC 3339; at most a minute in the past (meaning now) and at most 90 days ahead.
    pub at: String,
    /// Why (kept in the audit log).
    pub reason: Option<String>,
}

/// `filter` of `POST /v1/attempts/bulk_cancel`: every given field must match.
#[derive(Serialize, ToSchema)]
pub struct BulkCancelFilter {
    /// Operators: any merchant; a merchant key: its own only (the default).
    pub merchant_id: Option<String>,
    /// The payment's provider.
    pub provider: Option<String>,
    /// The error code of the failed call that scheduled the retry.
    pub error_code: Option<String>,
    /// RFC 3339: due before.
    pub scheduled_before: Option<String>,
    /// RFC 3339: due after.
    pub scheduled_after: Option<String>,
}

/// `POST /v1/attempts/bulk_cancel`
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"filter": {"provider": "acme", "error_code": "provider_unavailable"}, "reason": "acme is gone", "dry_run": true}))]
pub struct BulkCancelBody {
    pub filter: BulkCancelFilter,
    /// Why: the failed payments' `failure_message`, and the audit log's.
    pub reason: String,
    /// Count only; cancel nothing.
    pub dry_run: Option<bool>,
}

/// The answer of a bulk cancel.
#[derive(Serialize, ToSchema)]
pub struct BulkCancelResult {
    /// Scheduled attempts that matched when it started.
    pub matched: i64,
    /// Attempts canceled (0 on a dry run).
    pub canceled: i64,
}

/// `POST /v1/holds`: every given field must match (none: every attempt).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"provider": "acme", "reason": "acme outage, incident 42"}))]
pub struct CreateHoldBody {
    pub provider: Option<String>,
    pub merchant_id: Option<String>,
    /// The error code of the failed call that scheduled the retry.
    pub error_code: Option<String>,
    pub reason: String,
}

/// `POST /v1/holds/{id}/release`
#[derive(Serialize, ToSchema)]
pub struct ReleaseHoldBody {
    /// The window the held attempts are spread over: a duration (`30s`, `10m`, `2h`, at most `24h`); default `10m`.
    pub over: Option<String>,
}

/// `POST /v1/transactions/{id}/resolve`
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "succeeded", "provider_reference": "ch_123", "reason": "confirmed in the acme dashboard"}))]
pub struct ResolveBody {
    /// `succeeded` or `failed`.
    pub status: String,
    /// The provider's reference (needed for `succeeded` unless the transaction has one).
    pub provider_reference: Option<String>,
    pub reason: String,
}
