//! Events and their fan-out to webhook deliveries, in the transaction of the
//! change that caused them.

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::db::payments::Payment;
use crate::domain::{EventId, EventType, Scope};
use crate::timefmt;

/// `{"object": …}`
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EventData {
    /// The object as it was (absent once the event is expunged).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub object: Value,
    /// `payment.attempt_failed`: the attempt that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Value>,
}

/// The event object (contract §6), exactly the body sent to endpoints.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Event {
    pub id: EventId,
    pub object: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: EventType,
    #[serde(serialize_with = "timefmt::ser")]
    #[sqlx(rename = "created_at")]
    pub timestamp: OffsetDateTime,
    pub livemode: bool,
    #[sqlx(json)]
    pub data: EventData,
    /// True once its data was expunged (contract §13).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expunged: bool,
}

/// Records an event about a payment and one pending delivery for every
/// endpoint of the tenant that is enabled and subscribed to its type now.
pub async fn record(
    conn: &mut PgConnection,
    scope: &Scope,
    kind: EventType,
    payment: &Payment,
) -> Result<EventId, sqlx::Error> {
    record_all(conn, &[(scope, kind, payment)]).await?.pop().ok_or(sqlx::Error::RowNotFound)
}

/// [`record`] for several events at once (one round trip); answers their
/// ids in order.
pub async fn record_all(
    conn: &mut PgConnection,
    events: &[(&Scope, EventType, &Payment)],
) -> Result<Vec<EventId>, sqlx::Error> {
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    let merchants: Vec<&str> = events.iter().map(|(s, _, _)| s.merchant_id.as_str()).collect();
    let livemodes: Vec<bool> = events.iter().map(|(s, _, _)| s.livemode).collect();
    let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
    let payments: Vec<&str> = events.iter().map(|(_, _, p)| p.row.id.as_str()).collect();
    let data: Vec<Value> = events.iter().map(|(_, _, p)| serde_json::json!({ "object": p })).collect();
    // The events and their fan-out to every enabled endpoint subscribed to
    // their type, in one statement.
    sqlx::query(
        "WITH event AS (
             INSERT INTO events (id, merchant_id, livemode, type, payment_id, data)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::jsonb[])
             RETURNING id, merchant_id, livemode, type)
         INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
         SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), event.id, e.id, 'pending', now()
         FROM event JOIN webhook_endpoints e
           ON e.merchant_id = event.merchant_id AND e.livemode = event.livemode AND e.status = 'enabled'
          AND (event.type = ANY (e.enabled_events) OR '*' = ANY (e.enabled_events))",
    )
    .bind(ids.iter().map(EventId::as_str).collect::<Vec<_>>())
    .bind(merchants)
    .bind(livemodes)
    .bind(kinds)
    .bind(payments)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    // The caller rings notify::DELIVERIES after the commit.
    for (id, (_, kind, payment)) in ids.iter().zip(events) {
        tracing::info!(event_id = %id, payment_id = %payment.row.id, r#type = kind.as_str(), "event recorded");
    }
    Ok(ids)
}

/// Loads one event of a tenant.
pub async fn find(pool: &PgPool, scope: &Scope, id: &EventId) -> Result<Option<Event>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, 'event' AS object, type, created_at, livemode, data, expunged FROM events
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}

/// Replaces an event's data with `{}` (its deliveries still pending send
/// that), for a tenant; `None` when it has no such event.
pub async fn expunge(pool: &PgPool, scope: &Scope, id: &EventId) -> Result<Option<Event>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE events SET data = '{}', expunged = true
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3
         RETURNING id, 'event' AS object, type, created_at, livemode, data, expunged",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}

/// An event as its AMQP copy needs it (`amqp.publish_events`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ToPublish {
    pub id: EventId,
    pub merchant_id: String,
    #[sqlx(rename = "type")]
    pub kind: EventType,
    pub created_at: OffsetDateTime,
    pub livemode: bool,
    /// The stored JSON, as text.
    pub data: String,
}

/// The events named by the outbox's event rows, by id; one purged
/// meanwhile (retention) is missing from the answer.
pub async fn to_publish(conn: &mut PgConnection, ids: &[&str]) -> Result<Vec<ToPublish>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, merchant_id, type, created_at, livemode, data::text AS data FROM events WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}
