//! Webhook tooling reads (contract §13): a delivery's attempts with their
//! answers, an endpoint's stats over a window, and the test-mode
//! fast-forward of a payment's next attempt.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::paging::{self, Cursor, Keyset, Page};
use crate::domain::{DeliveryId, EndpointId, PaymentId, Scope};
use crate::timefmt;

/// One send of a delivery, as the receiver answered it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// Always `webhook_attempt`.
    pub object: String,
    /// `wha_<n>`
    pub id: String,
    pub delivery_id: DeliveryId,
    /// `succeeded` (a 2xx) or `failed`.
    pub status: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    /// The start of the answer (at most 1 KiB).
    pub response_body: Option<String>,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
}

/// The order of a delivery's attempts (`webhook_delivery_attempts_delivery`);
/// a cursor is one of the delivery's (`wha_` and the row's id).
const ATTEMPTS: Keyset = Keyset {
    table: "webhook_delivery_attempts",
    alias: "webhook_delivery_attempts",
    key: &["id"],
    owner: "WHERE k.delivery_id = $2 AND $3::boolean IS NULL",
};

/// A delivery's attempts of this tenant, newest first, whether more follow
/// and their number; `None` when the tenant has no such delivery,
/// `Some(None)` when the cursor is not one of its attempts.
pub async fn attempts(
    pool: &PgPool,
    scope: &Scope,
    delivery: &DeliveryId,
    limit: i64,
    cursor: &Cursor<i64>,
) -> Result<Option<Page<DeliveryAttempt>>, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let total: Option<i64> = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id)
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.id = $1 AND e.merchant_id = $2 AND e.livemode = $3",
    )
    .bind(delivery)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(total) = total else { return Ok(None) };
    if !ATTEMPTS.admits(&mut tx, cursor, Some(delivery.as_str()), None).await? {
        return Ok(Some(None));
    }
    let rows = paging::bind(
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT 'webhook_attempt' AS object, 'wha_' || id AS id, delivery_id,
             CASE WHEN status_code BETWEEN 200 AND 299 THEN 'succeeded' ELSE 'failed' END AS status,
             status_code, error, duration_ms, response_body, attempted_at AS created_at
             FROM webhook_delivery_attempts WHERE delivery_id = $1 {}",
            ATTEMPTS.tail(cursor, 2)
        )))
        .bind(delivery),
        cursor,
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (rows, more) = paging::finish(rows, cursor, limit);
    Ok(Some(Some((rows, more, total))))
}

/// An endpoint's deliveries created in the window, by status; the
/// latency from the event's commit to the 2xx; the age of the oldest
/// pending delivery.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct Stats {
    pub succeeded: i64,
    pub failed: i64,
    pub pending: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub oldest_pending_age_s: Option<f64>,
}

/// Most deliveries a stats request reads: the window's newest. Beyond it
/// the counts are exact only up to this many (a request stays cheap
/// however busy the endpoint is).
pub const STATS_MAX_ROWS: i64 = 100_000;

/// [`Stats`] of one endpoint over the last `window`: an index range scan
/// of the window's newest [`STATS_MAX_ROWS`] deliveries, never the table.
pub async fn stats(pool: &PgPool, endpoint: &EndpointId, window: std::time::Duration) -> Result<Stats, sqlx::Error> {
    sqlx::query_as(
        "WITH w AS (
             SELECT d.status, d.created_at, d.delivered_at, ev.created_at AS event_at
             FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
             WHERE d.endpoint_id = $1 AND d.created_at >= now() - make_interval(secs => $2)
             ORDER BY d.created_at DESC LIMIT $3)
         SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                count(*) FILTER (WHERE status = 'pending') AS pending,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - event_at) * 1000)
                    FILTER (WHERE status = 'succeeded') AS p50_ms,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - event_at) * 1000)
                    FILTER (WHERE status = 'succeeded') AS p99_ms,
                extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::float8
                    AS oldest_pending_age_s
         FROM w",
    )
    .bind(endpoint)
    .bind(window.as_secs_f64())
    .bind(STATS_MAX_ROWS)
    .fetch_one(pool)
    .await
}

/// Test mode: the payment's next scheduled attempt becomes due now (and is
/// marked not yet enqueued, so the scheduler sends it at once). `None` when
/// the tenant has no such test payment; `Some(false)` when nothing was
/// scheduled.
pub async fn advance(pool: &PgPool, scope: &Scope, payment: &PaymentId) -> Result<Option<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found: Option<String> = sqlx::query_scalar(
        "SELECT id FROM payments WHERE id = $1 AND merchant_id = $2 AND livemode = $3 AND NOT livemode FOR UPDATE",
    )
    .bind(payment)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Ok(None);
    }
    let moved = sqlx::query(
        "WITH next AS (
             SELECT id FROM attempts WHERE payment_id = $1 AND status = 'scheduled' ORDER BY scheduled_at LIMIT 1
             FOR UPDATE),
         due AS (
             UPDATE attempts a SET scheduled_at = now(), enqueued_at = NULL FROM next WHERE a.id = next.id
                 AND a.status = 'scheduled' RETURNING a.id)
         UPDATE payments SET next_attempt_at = now(), updated_at = now()
         WHERE id = $1 AND next_attempt_at IS NOT NULL AND EXISTS (SELECT 1 FROM due)",
    )
    .bind(payment)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(moved.rows_affected() > 0))
}

/// What a test send needs of an endpoint of this tenant: its URL and its
/// sealed secrets (the previous one while it is still valid).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Target {
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
}

/// The endpoint's [`Target`].
pub async fn target(pool: &PgPool, scope: &Scope, endpoint: &EndpointId) -> Result<Option<Target>, sqlx::Error> {
    sqlx::query_as(
        "SELECT url, secret, CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret
         FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 AND livemode = $3",
    )
    .bind(endpoint)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}
