//! Webhook tooling for merchants (contract §13): a delivery's attempts, an
//! endpoint's stats, test sends, and the test-mode fast-forward.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::params::{Fields, Query, unknown_cursor};
use super::{ApiError, Ctx, ErrorCode, list_body, to_json};
use crate::db::{delivery_log, payments as store, recoveries, webhooks};
use crate::domain::{DeliveryId, EndpointId, EventId, EventType, PaymentId, Scope};
use crate::outbound::{Message, Outbound};

/// The window of `GET /v1/webhook_endpoints/{id}/stats`.
const STATS_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `GET /v1/webhook_deliveries/{id}/attempts`: newest first.
pub async fn attempts(ctx: &Ctx, scope: &Scope, id: &str, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let missing = || ApiError::not_found("webhook delivery");
    let id = DeliveryId::parse(id).ok_or_else(missing)?;
    let mut q = Query::list(query, &[])?;
    // Attempt ids are `wha_` and a row number; there is no typed id for them.
    let attempt = |raw: &str| {
        let n = raw.strip_prefix("wha_").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?;
        n.parse::<i64>().ok()
    };
    let (limit, cursor) = (q.limit()?, q.cursor(attempt, "a webhook attempt id (wha_…)")?);
    let (rows, more, total) = delivery_log::attempts(&ctx.db, scope, &id, limit, &cursor)
        .await?
        .ok_or_else(missing)?
        .ok_or_else(|| unknown_cursor(&cursor, "webhook attempt"))?;
    list_body(&rows, more, total)
}

fn endpoint_id(raw: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(raw).ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// `GET /v1/webhook_endpoints/{id}/stats`: the last 24 hours.
pub async fn stats(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = endpoint_id(id)?;
    webhooks::find(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let s = delivery_log::stats(&ctx.db, &id, STATS_WINDOW).await?;
    let ms = |v: Option<f64>| v.map(|v| v.round() as i64);
    Ok(json!({
        "object": "webhook_endpoint_stats",
        "endpoint_id": id,
        "window": "24h",
        "succeeded": s.succeeded,
        "failed": s.failed,
        "pending": s.pending,
        "latency_ms": {"p50": ms(s.p50_ms), "p99": ms(s.p99_ms)},
        "oldest_pending_age_s": s.oldest_pending_age_s.map(|v| v.floor() as i64),
    }))
}

/// The example `data` of a test event: what a real one of `kind` holds.
fn example_data(scope: &Scope, endpoint: &EndpointId, kind: EventType) -> Value {
    let now = crate::timefmt::format(time::OffsetDateTime::now_utc());
    match kind {
        EventType::WebhookEndpointDisabled => json!({"object": {
            "object": "webhook_endpoint", "id": endpoint, "status": "disabled", "livemode": scope.livemode,
            "disabled_at": now, "disabled_reason": "failing", "failing_since": now}}),
        EventType::WebhookDeliveryExhausted => json!({"object": {
            "object": "webhook_delivery", "id": DeliveryId::generate(), "event_id": EventId::generate(),
            "endpoint_id": endpoint, "event_type": "payment.succeeded", "status": "failed", "attempts": 8,
            "last_status_code": 500, "last_error": "HTTP 500", "next_attempt_at": null, "created_at": now,
            "delivered_at": null}}),
        EventType::PaymentAttemptFailed => json!({"object": example_payment(scope, kind), "attempt": {
            "id": crate::domain::AttemptId::generate(), "number": 1, "error_code": "processing_error",
            "will_retry": true, "next_attempt_at": now}}),
        _ => json!({"object": example_payment(scope, kind)}),
    }
}

/// The example payment of a test event: what a real one of `kind` looks like.
fn example_payment(scope: &Scope, kind: EventType) -> Value {
    let status = match kind {
        EventType::PaymentSucceeded => "succeeded",
        EventType::PaymentFailed => "failed",
        EventType::PaymentCanceled => "canceled",
        EventType::PaymentRefunded => "refunded",
        EventType::PaymentRequiresCapture => "requires_capture",
        EventType::PaymentRequiresAction => "requires_action",
        EventType::PaymentCreated | EventType::PaymentAttemptFailed => "pending",
        EventType::WebhookEndpointDisabled | EventType::WebhookDeliveryExhausted => "succeeded",
    };
    let now = crate::timefmt::format(time::OffsetDateTime::now_utc());
    let id = PaymentId::generate();
    json!({
        "object": "payment", "id": id, "number": 0, "sequence": 1, "livemode": scope.livemode,
        "amount": 1000, "currency": "USD", "capture": true, "amount_capturable": 0,
        "amount_captured": if status == "succeeded" || status == "refunded" { 1000 } else { 0 },
        "amount_refunded": if status == "refunded" { 1000 } else { 0 },
        "status": status, "payment_method_id": "pm_test_success", "provider": "sandbox", "method": "card",
        "description": "payd test event", "metadata": {}, "tags": [], "fee": 0,
        "error_code": if status == "failed" { json!("card_declined") } else { Value::Null },
        "attempt_count": 1, "created_at": now, "updated_at": now, "refunds": [],
        "_links": {"self": {"href": format!("/v1/payments/{id}")}},
    })
}

/// `POST /v1/webhook_endpoints/{id}/test` (`type`, default
/// `payment.succeeded`): sends a signed example event (`"test": true`) at
/// once, through the same guarded client as deliveries, and answers how the
/// endpoint took it. Nothing is stored and nothing is retried.
pub async fn test_send(ctx: &Ctx, scope: &Scope, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = endpoint_id(id)?;
    let mut f = Fields::new(body, &["type"])?;
    let kind = match f.optional_string("type", 64)? {
        Some(t) => EventType::parse(&t)
            .ok_or_else(|| ApiError::invalid("type", format!("type must be one of {}", EventType::names())))?,
        None => EventType::PaymentSucceeded,
    };
    let target =
        delivery_log::target(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let owner = id.as_str();
    let secret = ctx.secrets.open(owner, &target.secret).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    let previous = target.previous_secret.as_deref().and_then(|p| ctx.secrets.open(owner, p).ok());
    let event_id = EventId::generate();
    let event = json!({
        "id": event_id, "object": "event", "type": kind, "test": true,
        "timestamp": crate::timefmt::format(time::OffsetDateTime::now_utc()), "livemode": scope.livemode,
        "data": example_data(scope, &id, kind),
    });
    let webhooks = &ctx.settings.webhooks;
    let outbound = ctx
        .test_sends
        .get_or_try_init(|| async { Outbound::new(webhooks.timeout, webhooks.allow_private_targets) })
        .await
        .map_err(ApiError::internal)?;
    let started = Instant::now();
    let posted = outbound
        .post(Message {
            url: &target.url,
            livemode: scope.livemode,
            secret: &secret,
            previous_secret: previous.as_deref(),
            id: event_id.as_str(),
            body: event.to_string(),
        })
        .await;
    Ok(json!({
        "delivered": posted.delivered(),
        "status_code": posted.status_code,
        "duration_ms": started.elapsed().as_millis() as u64,
        "error": posted.error,
    }))
}

/// `POST /v1/test_helpers/payments/{id}/advance`: the payment's next
/// scheduled attempt is due now; answers the payment. Test mode only: a
/// live key finds nothing (404).
pub async fn advance(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let missing = || ApiError::not_found("payment");
    let id = PaymentId::parse(id).ok_or_else(missing)?;
    if scope.livemode {
        return Err(missing());
    }
    delivery_log::advance(&ctx.db, scope, &id).await?.ok_or_else(missing)?;
    crate::db::notify::ring(&ctx.db, crate::db::notify::OUTBOX);
    let mut conn = ctx.db.acquire().await?;
    let row = store::find(&mut conn, scope, &id, false).await?.ok_or_else(missing)?;
    to_json(&store::view(&mut conn, row).await?)
}

/// `POST /v1/webhook_endpoints/{id}/recover` (`since`*, `until`, default
/// now, `include_missed`): 202 with the recovery, worked through by the
/// dispatchers; 409 `recovery_running` while one runs for the endpoint.
pub async fn recover(ctx: &Ctx, scope: &Scope, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = endpoint_id(id)?;
    let mut f = Fields::new(body, &["since", "until", "include_missed"])?;
    let time = |f: &mut Fields, name: &str| -> Result<Option<time::OffsetDateTime>, ApiError> {
        f.optional_string(name, 64)?
            .map(|v| {
                crate::timefmt::parse(&v)
                    .ok_or_else(|| ApiError::invalid(name, format!("{name} must be an RFC 3339 timestamp")))
            })
            .transpose()
    };
    let since = time(&mut f, "since")?.ok_or_else(|| ApiError::missing("since"))?;
    let until = time(&mut f, "until")?.unwrap_or_else(time::OffsetDateTime::now_utc);
    if since >= until {
        return Err(ApiError::invalid("until", "until must be after since"));
    }
    let include_missed = f.optional_bool("include_missed")?.unwrap_or(false);
    match recoveries::start(&ctx.db, scope, &id, since, until, include_missed).await {
        Ok(Some(r)) => to_json(&r),
        Ok(None) => Err(ApiError::not_found("webhook endpoint")),
        Err(e) if crate::db::is_unique_violation(&e, recoveries::ONE_RUNNING) => Err(ApiError::new(
            409,
            ErrorCode::RecoveryRunning,
            "a recovery of this endpoint is running; wait for it to complete",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/recoveries/{id}`
pub async fn retrieve_recovery(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let valid = id.strip_prefix("rcv_").is_some_and(|b| b.len() == 32 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(ApiError::not_found("recovery"));
    }
    to_json(&recoveries::find(&ctx.db, scope, id).await?.ok_or_else(|| ApiError::not_found("recovery"))?)
}
