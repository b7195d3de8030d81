//! Events that are not a payment's change (contract §13): an endpoint was
//! disabled, a delivery gave up, and a payment's attempt failed (with the
//! attempt beside the payment). Each is written in the transaction of what
//! caused it, with its fan-out, like every event.

use serde_json::{Value, json};
use sqlx::PgConnection;

use super::payments::Payment;
use super::webhooks::{DELIVERY_SELECT, Delivery, ENDPOINT_COLUMNS, Endpoint};
use crate::domain::{DeliveryId, EndpointId, EventId, EventType, Scope};

/// One event of `merchant`/`livemode` taken from the endpoint `of` (or the
/// scope), fanned out to every enabled subscribed endpoint but `skip`.
async fn insert(
    conn: &mut PgConnection,
    owner: Owner<'_>,
    kind: EventType,
    payment_id: Option<&str>,
    data: Value,
    skip: Option<&EndpointId>,
) -> Result<EventId, sqlx::Error> {
    let id = EventId::generate();
    let (endpoint, merchant, livemode) = match owner {
        Owner::Endpoint(e) => (Some(e.as_str()), None, None),
        Owner::Scope(s) => (None, Some(s.merchant_id.as_str()), Some(s.livemode)),
    };
    sqlx::query(
        "WITH owner AS (
             SELECT merchant_id, livemode FROM webhook_endpoints WHERE id = $2
             UNION ALL SELECT $3, $4 WHERE $2::text IS NULL),
         event AS (
             INSERT INTO events (id, merchant_id, livemode, type, payment_id, data)
             SELECT $1, merchant_id, livemode, $5, $6, $7 FROM owner LIMIT 1
             RETURNING id, merchant_id, livemode, type)
         INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
         SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), event.id, e.id, 'pending', now()
         FROM event JOIN webhook_endpoints e
           ON e.merchant_id = event.merchant_id AND e.livemode = event.livemode AND e.status = 'enabled'
          AND (event.type = ANY (e.enabled_events) OR '*' = ANY (e.enabled_events))
          AND e.id IS DISTINCT FROM $8",
    )
    .bind(&id)
    .bind(endpoint)
    .bind(merchant)
    .bind(livemode)
    .bind(kind)
    .bind(payment_id)
    .bind(data)
    .bind(skip)
    .execute(conn)
    .await?;
    tracing::info!(event_id = %id, r#type = kind.as_str(), "event recorded");
    Ok(id)
}

enum Owner<'a> {
    Endpoint(&'a EndpointId),
    Scope(&'a Scope),
}

/// `webhook_endpoint.disabled`: never sent to the endpoint it concerns.
pub async fn endpoint_disabled(conn: &mut PgConnection, endpoint: &EndpointId) -> Result<(), sqlx::Error> {
    let object: Endpoint =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1")))
            .bind(endpoint)
            .fetch_one(&mut *conn)
            .await?;
    let data = json!({"object": object});
    insert(conn, Owner::Endpoint(endpoint), EventType::WebhookEndpointDisabled, None, data, Some(endpoint)).await?;
    Ok(())
}

/// `webhook_delivery.exhausted`: a delivery gave up. Not for deliveries of
/// these two kinds of event themselves (a failing endpoint would feed
/// itself), and never sent to the endpoint that failed.
pub async fn delivery_exhausted(
    conn: &mut PgConnection,
    delivery: &DeliveryId,
    endpoint: &EndpointId,
    event_type: EventType,
) -> Result<(), sqlx::Error> {
    if matches!(event_type, EventType::WebhookDeliveryExhausted | EventType::WebhookEndpointDisabled) {
        return Ok(());
    }
    let object: Delivery = sqlx::query_as(sqlx::AssertSqlSafe(format!("{DELIVERY_SELECT} WHERE d.id = $1")))
        .bind(delivery)
        .fetch_one(&mut *conn)
        .await?;
    let data = json!({"object": object});
    insert(conn, Owner::Endpoint(endpoint), EventType::WebhookDeliveryExhausted, None, data, Some(endpoint)).await?;
    Ok(())
}

/// `payment.attempt_failed`: the payment, and `data.attempt` with
/// `{"id","number","error_code","will_retry","next_attempt_at"}`.
pub async fn attempt_failed(
    conn: &mut PgConnection,
    scope: &Scope,
    payment: &Payment,
    attempt: Value,
) -> Result<(), sqlx::Error> {
    let data = json!({"object": payment, "attempt": attempt});
    let kind = EventType::PaymentAttemptFailed;
    insert(conn, Owner::Scope(scope), kind, Some(payment.row.id.as_str()), data, None).await?;
    Ok(())
}
