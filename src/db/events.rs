//! Events and their fan-out to webhook deliveries, in the transaction of the
//! change that caused them.

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::db::payments::{Payment, Scope};
use crate::domain::{EventId, EventType, PaymentId};
use crate::timefmt;

/// `{"object": …}`
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EventData {
    pub object: Value,
}

/// The event object (contract §6), exactly the body sent to endpoints.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Event {
    pub id: EventId,
    pub object: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    #[serde(serialize_with = "timefmt::ser")]
    #[sqlx(rename = "created_at")]
    pub timestamp: OffsetDateTime,
    pub livemode: bool,
    #[sqlx(json)]
    pub data: EventData,
}

/// Records an event about a payment and one pending delivery for every
/// endpoint of the tenant that is enabled and subscribed to its type now.
pub async fn record(
    conn: &mut PgConnection,
    scope: &Scope,
    kind: EventType,
    payment: &Payment,
) -> Result<EventId, sqlx::Error> {
    let id = EventId::generate();
    let data = serde_json::json!({ "object": payment });
    // One round trip: the event and its fan-out to every enabled endpoint
    // subscribed to its type.
    sqlx::query(
        "WITH event AS (
             INSERT INTO events (id, merchant_id, livemode, type, payment_id, data)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
         INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
         SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), event.id, e.id, 'pending', now()
         FROM webhook_endpoints e, event
         WHERE e.merchant_id = $2 AND e.livemode = $3 AND e.status = 'enabled'
           AND ($4 = ANY (e.enabled_events) OR '*' = ANY (e.enabled_events))",
    )
    .bind(&id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(kind.as_str())
    .bind(&payment.row.id)
    .bind(&data)
    .execute(&mut *conn)
    .await?;
    // The caller rings notify::DELIVERIES after the commit.
    tracing::info!(event_id = %id, payment_id = %payment.row.id, r#type = kind.as_str(), "event recorded");
    Ok(id)
}

/// Loads one event of a tenant.
pub async fn find(pool: &PgPool, scope: &Scope, id: &EventId) -> Result<Option<Event>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, 'event' AS object, type, created_at, livemode, data FROM events
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}

/// Events of a tenant, newest first, with the total matching.
pub async fn list(
    pool: &PgPool,
    scope: &Scope,
    kind: Option<&str>,
    payment: Option<&PaymentId>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Event>, i64), sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let rows = sqlx::query_as(
        "SELECT id, 'event' AS object, type, created_at, livemode, data FROM events
         WHERE merchant_id = $1 AND livemode = $2 AND ($3::text IS NULL OR type = $3)
           AND ($4::text IS NULL OR payment_id = $4)
         ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6",
    )
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(kind)
    .bind(payment)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE merchant_id = $1 AND livemode = $2
           AND ($3::text IS NULL OR type = $3) AND ($4::text IS NULL OR payment_id = $4)",
    )
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(kind)
    .bind(payment)
    .fetch_one(&mut *tx)
    .await?;
    Ok((rows, total))
}
