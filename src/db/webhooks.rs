//! Webhook endpoints and deliveries.

use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;

use super::paging::{self, BY_TENANT, Cursor, Keyset, Page};
use crate::domain::{DeliveryId, DeliveryStatus, EndpointId, EndpointStatus, EventId, EventType, Scope};
use crate::timefmt;

/// The webhook endpoint object. `secret` is only filled on creation.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Endpoint {
    pub object: String,
    pub id: EndpointId,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub status: EndpointStatus,
    pub description: Option<String>,
    pub metadata: Value,
    pub livemode: bool,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser")]
    pub updated_at: OffsetDateTime,
    /// Since when its deliveries fail without a success (contract §13).
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub failing_since: Option<OffsetDateTime>,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub disabled_at: Option<OffsetDateTime>,
    /// `gone` (it answered 410), `failing` (`webhooks.disable_after`) or `manual`.
    pub disabled_reason: Option<String>,
    /// Deliveries per second at most, across every dispatcher.
    pub rate_limit: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
    pub secret: Option<String>,
}

pub(crate) const ENDPOINT_COLUMNS: &str = "'webhook_endpoint' AS object, id, url, enabled_events, status, description, metadata, \
    livemode, created_at, updated_at, failing_since, disabled_at, disabled_reason, rate_limit";

/// A new endpoint, already checked.
pub struct NewEndpoint {
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub metadata: Value,
    /// Chosen by the caller: the sealed secret is bound to it.
    pub id: EndpointId,
    /// The secret, sealed with `secrets.master_key`.
    pub sealed_secret: String,
    pub rate_limit: Option<i32>,
}

/// Creates an endpoint; the answer carries its secret.
pub async fn create(
    conn: &mut PgConnection,
    scope: &Scope,
    e: NewEndpoint,
    max_endpoints: u32,
) -> Result<Option<Endpoint>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Creates of one merchant queue on its row, so two cannot both see room
    // for one more; the guard is the count.
    sqlx::query("SELECT 1 FROM merchants WHERE id = $1 FOR UPDATE").bind(&scope.merchant_id).execute(&mut *tx).await?;
    let inserted: Option<Endpoint> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints (id, merchant_id, livemode, url, enabled_events, status, description, metadata, secret,
             rate_limit)
         SELECT $1, $2, $3, $4, $5, 'enabled', $6, $7, $8, $10
         WHERE (SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $2 AND livemode = $3) < $9
         RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(&e.id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(&e.url)
    .bind(&e.enabled_events)
    .bind(&e.description)
    .bind(&e.metadata)
    .bind(&e.sealed_secret)
    .bind(i64::from(max_endpoints))
    .bind(e.rate_limit)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// One endpoint of a tenant.
pub async fn find(pool: &PgPool, scope: &Scope, id: &EndpointId) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 AND livemode = $3"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}

/// The endpoints list's order.
const ENDPOINTS: Keyset =
    Keyset { table: "webhook_endpoints", alias: "webhook_endpoints", key: &["created_at", "id"], owner: BY_TENANT };

/// Endpoints of a tenant, newest first, whether more follow and the total;
/// `None` when the cursor is not one of them.
pub async fn list(
    pool: &PgPool,
    scope: &Scope,
    limit: i64,
    cursor: &Cursor<EndpointId>,
) -> Result<Page<Endpoint>, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    if !ENDPOINTS.admits(&mut tx, cursor, Some(scope.merchant_id.as_str()), Some(scope.livemode)).await? {
        return Ok(None);
    }
    let rows = paging::bind(
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = $1 AND livemode = $2 {}",
            ENDPOINTS.tail(cursor, 3)
        )))
        .bind(&scope.merchant_id)
        .bind(scope.livemode),
        cursor,
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (rows, more) = paging::finish(rows, cursor, limit);
    let total = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $1 AND livemode = $2")
        .bind(&scope.merchant_id)
        .bind(scope.livemode)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((rows, more, total)))
}

/// Changes to an endpoint, already checked; `None` leaves a field alone.
#[derive(Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub status: Option<EndpointStatus>,
    pub description: Option<String>,
    /// `Some(None)` removes the throttle.
    pub rate_limit: Option<Option<i32>>,
}

/// Updates an endpoint; `None` if unknown. Re-enabling clears its failure streak.
pub async fn update(
    pool: &PgPool,
    scope: &Scope,
    id: &EndpointId,
    u: EndpointUpdate,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET url = COALESCE($4, url), enabled_events = COALESCE($5, enabled_events),
             status = COALESCE($6, status), description = COALESCE($7, description),
             rate_limit = CASE WHEN $8 THEN $9 ELSE rate_limit END,
             failing_since = CASE WHEN $6 = 'enabled' THEN NULL ELSE failing_since END,
             disabled_at = CASE WHEN $6 = 'enabled' THEN NULL
                                WHEN $6 = 'disabled' AND status = 'enabled' THEN now() ELSE disabled_at END,
             disabled_reason = CASE WHEN $6 = 'enabled' THEN NULL
                                    WHEN $6 = 'disabled' AND status = 'enabled' THEN 'manual' ELSE disabled_reason END,
             updated_at = now()
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(&u.url)
    .bind(&u.enabled_events)
    .bind(u.status)
    .bind(&u.description)
    .bind(u.rate_limit.is_some())
    .bind(u.rate_limit.flatten())
    .fetch_optional(pool)
    .await
}

/// Replaces the secret; the previous one keeps signing (second) until
/// `expire_previous_in` has passed. `None` if unknown.
pub async fn rotate_secret(
    pool: &PgPool,
    scope: &Scope,
    id: &EndpointId,
    sealed_secret: &str,
    expire_previous_in: std::time::Duration,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET previous_secret = secret,
             previous_secret_expires_at = now() + make_interval(secs => $5), secret = $4, updated_at = now()
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(sealed_secret)
    .bind(expire_previous_in.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Endpoints whose secrets are still stored in the clear (made before
/// secrets were sealed): id, secret, previous secret.
pub async fn plain_secrets(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<(EndpointId, String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, secret, previous_secret FROM webhook_endpoints
         WHERE secret NOT LIKE 'enc:v1:%' OR previous_secret NOT LIKE 'enc:v1:%' LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Clear secrets → sealed ones, unless the endpoint changed its secrets
/// meanwhile (a rotation seals its own).
pub async fn seal_secrets(
    pool: &PgPool,
    id: &EndpointId,
    plain: (&str, Option<&str>),
    sealed: (&str, Option<&str>),
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET secret = $4, previous_secret = $5
         WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
    )
    .bind(id)
    .bind(plain.0)
    .bind(plain.1)
    .bind(sealed.0)
    .bind(sealed.1)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes a delivery of this tenant due now, whatever its status; answers it.
pub async fn retry_now(pool: &PgPool, scope: &Scope, id: &DeliveryId) -> Result<Option<Delivery>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found: Option<DeliveryId> = sqlx::query_scalar(
        "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(), lease_until = NULL
         FROM webhook_endpoints e
         WHERE d.id = $1 AND e.id = d.endpoint_id AND e.merchant_id = $2 AND e.livemode = $3
         RETURNING d.id",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Ok(None);
    }
    let delivery = sqlx::query_as(sqlx::AssertSqlSafe(format!("{DELIVERY_SELECT} WHERE d.id = $1")))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    super::notify::ring(pool, super::notify::DELIVERIES);
    Ok(delivery)
}

/// Deletes an endpoint and its pending deliveries; false if unknown.
pub async fn delete(pool: &PgPool, scope: &Scope, id: &EndpointId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 AND livemode = $3")
        .bind(id)
        .bind(&scope.merchant_id)
        .bind(scope.livemode)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The delivery object.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    pub object: String,
    pub id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub delivered_at: Option<OffsetDateTime>,
}

pub(crate) const DELIVERY_SELECT: &str = "SELECT 'webhook_delivery' AS object, d.id, d.event_id, d.endpoint_id,
        ev.type AS event_type, d.status, d.attempts, d.last_status_code, d.last_error,
        CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at, d.created_at, d.delivered_at
    FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id";

/// The deliveries list's order (`webhook_deliveries_endpoint`); a cursor
/// is a delivery of the endpoint (`$2`).
const DELIVERIES: Keyset = Keyset {
    table: "webhook_deliveries",
    alias: "d",
    key: &["created_at", "id"],
    owner: "WHERE k.endpoint_id = $2 AND $3::boolean IS NULL",
};

/// Deliveries of one endpoint, newest first, whether more follow and the
/// total; `None` when the cursor is not one of the endpoint's.
pub async fn deliveries(
    pool: &PgPool,
    endpoint: &EndpointId,
    status: Option<DeliveryStatus>,
    limit: i64,
    cursor: &Cursor<DeliveryId>,
) -> Result<Page<Delivery>, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    if !DELIVERIES.admits(&mut tx, cursor, Some(endpoint.as_str()), None).await? {
        return Ok(None);
    }
    let rows = paging::bind(
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{DELIVERY_SELECT} WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2) {}",
            DELIVERIES.tail(cursor, 3)
        )))
        .bind(endpoint)
        .bind(status),
        cursor,
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (rows, more) = paging::finish(rows, cursor, limit);
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(endpoint)
    .bind(status)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some((rows, more, total)))
}
