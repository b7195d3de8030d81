//! Webhook tooling for merchants (contract §13): a delivery's attempts, an
//! endpoint's stats, test sends, and the test-mode fast-forward.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::params::{Fields, Query};
use super::{ApiError, Ctx, list_body, to_json};
use crate::db::{delivery_log, payments as store, webhooks};
use crate::domain::{DeliveryId, EndpointId, EventId, EventType, PaymentId, Scope};
use crate::outbound::{Message, Outbound};

/// The window of `GET /v1/webhook_endpoints/{id}/stats`.
const STATS_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `GET /v1/webhook_deliveries/{id}/attempts`: newest first.
pub async fn attempts(ctx: &Ctx, scope: &Scope, id: &str, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let missing = || ApiError::not_found("webhook delivery");
    let id = DeliveryId::parse(id).ok_or_else(missing)?;
    let mut q = Query::new(query, &["limit", "offset"])?;
    let (limit, offset) = (q.limit()?, q.offset()?);
    let (rows, total) = delivery_log::attempts(&ctx.db, scope, &id, limit, offset).await?.ok_or_else(missing)?;
    list_body(&rows, offset, total)
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

/// The example payment of a test event: what a real one of `kind` looks like.
fn example_payment(scope: &Scope, kind: EventType) -> Value {
    let status = match kind {
        EventType::PaymentSucceeded => "succeeded",
        EventType::PaymentFailed => "failed",
        EventType::PaymentCanceled => "canceled",
        EventType::PaymentRefunded => "refunded",
        EventType::PaymentRequiresCapture => "requires_capture",
        EventType::PaymentRequiresAction => "requires_action",
        EventType::PaymentCreated => "pending",
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
        "data": {"object": example_payment(scope, kind)},
    });
    let webhooks = &ctx.settings.webhooks;
    let outbound = Outbound::new(webhooks.timeout, webhooks.allow_private_targets).map_err(ApiError::internal)?;
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
