//! Recoveries (contract §13): every failed delivery of an endpoint created
//! in a window is sent again, and with `include_missed` every event of its
//! subscribed types in the window that it has no delivery for (it was
//! disabled then) gets one. A dispatcher works through a recovery in
//! batches; each batch and the recovery's progress commit together, and the
//! guards (`status = 'failed'`, the `(event_id, endpoint_id)` key) make a
//! repeated batch change nothing, so no event is sent twice by one recovery.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::domain::{EndpointId, Scope};
use crate::timefmt;

/// The recovery object.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Recovery {
    /// Always `recovery`.
    pub object: String,
    /// `rcv_…`
    pub id: String,
    pub endpoint_id: EndpointId,
    /// `running` or `completed`.
    pub status: String,
    /// Every delivery it sends, missed events included.
    pub deliveries: i64,
    #[serde(serialize_with = "timefmt::ser")]
    pub since: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser")]
    pub until: OffsetDateTime,
    pub include_missed: bool,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub completed_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "'recovery' AS object, r.id, r.endpoint_id, r.status, r.deliveries, r.since, r.until,
    r.include_missed, r.created_at, r.completed_at";

/// The unique index behind 409 `recovery_running`.
pub const ONE_RUNNING: &str = "recoveries_running";

/// Failed deliveries of endpoint `$1` created in [`$2`, `$3`).
const FAILED: &str = "SELECT d.id, d.created_at FROM webhook_deliveries d
    WHERE d.endpoint_id = $1 AND d.status = 'failed' AND d.created_at >= $2 AND d.created_at < $3";

/// Events of endpoint `$1`'s tenant and types in [`$2`, `$3`), since it
/// exists, that it has no delivery for; not the events about itself, which
/// are never sent to it.
const MISSED: &str = "SELECT ev.id, ev.created_at FROM events ev JOIN webhook_endpoints ep ON ep.id = $1
    WHERE ev.merchant_id = ep.merchant_id AND ev.livemode = ep.livemode
      AND ev.created_at >= $2 AND ev.created_at < $3 AND ev.created_at >= ep.created_at
      AND (ev.type = ANY (ep.enabled_events) OR '*' = ANY (ep.enabled_events))
      AND NOT (ev.type IN ('webhook_endpoint.disabled', 'webhook_delivery.exhausted')
               AND ep.id IN (ev.data->'object'->>'id', ev.data->'object'->>'endpoint_id'))
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id AND d.endpoint_id = ep.id)";

/// Starts a recovery of an endpoint of this tenant, counting what it will
/// send. `None` when the tenant has no such endpoint; a unique violation of
/// [`ONE_RUNNING`] when one runs for it.
pub async fn start(
    pool: &PgPool,
    scope: &Scope,
    endpoint: &EndpointId,
    since: OffsetDateTime,
    until: OffsetDateTime,
    include_missed: bool,
) -> Result<Option<Recovery>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found: Option<String> =
        sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 AND livemode = $3")
            .bind(endpoint)
            .bind(&scope.merchant_id)
            .bind(scope.livemode)
            .fetch_optional(&mut *tx)
            .await?;
    if found.is_none() {
        return Ok(None);
    }
    let count = |sql: &str| format!("SELECT count(*) FROM ({sql}) x");
    let failed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count(FAILED)))
        .bind(endpoint)
        .bind(since)
        .bind(until)
        .fetch_one(&mut *tx)
        .await?;
    let missed: i64 = if include_missed {
        sqlx::query_scalar(sqlx::AssertSqlSafe(count(MISSED)))
            .bind(endpoint)
            .bind(since)
            .bind(until)
            .fetch_one(&mut *tx)
            .await?
    } else {
        0
    };
    let id = format!("rcv_{}", uuid::Uuid::now_v7().simple());
    let recovery = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO recoveries AS r (id, endpoint_id, since, until, include_missed, status, deliveries)
         VALUES ($1, $2, $3, $4, $5, 'running', $6) RETURNING {COLUMNS}"
    )))
    .bind(&id)
    .bind(endpoint)
    .bind(since)
    .bind(until)
    .bind(include_missed)
    .bind(failed + missed)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(recovery))
}

/// One recovery of this tenant.
pub async fn find(pool: &PgPool, scope: &Scope, id: &str) -> Result<Option<Recovery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM recoveries r JOIN webhook_endpoints e ON e.id = r.endpoint_id
         WHERE r.id = $1 AND e.merchant_id = $2 AND e.livemode = $3"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct Running {
    id: String,
    endpoint_id: EndpointId,
    since: OffsetDateTime,
    until: OffsetDateTime,
    include_missed: bool,
    phase: i16,
    cursor_at: Option<OffsetDateTime>,
    cursor_id: Option<String>,
}

/// Works one batch of at most `batch` rows of a running recovery (one not
/// locked by another dispatcher), then `before_commit` (a crash point), and
/// commits it with the recovery's progress. Answers whether there was one.
pub async fn step(pool: &PgPool, batch: i64, before_commit: impl FnOnce()) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let running: Option<Running> = sqlx::query_as(
        "SELECT id, endpoint_id, since, until, include_missed, phase, cursor_at, cursor_id FROM recoveries
         WHERE status = 'running' ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(r) = running else { return Ok(false) };
    let (source, action) = if r.phase == 0 {
        (
            FAILED,
            "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(), lease_until = NULL
             FROM pick WHERE d.id = pick.id AND d.status = 'failed'",
        )
    } else {
        (
            MISSED,
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
             SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), pick.id, $1, 'pending', now() FROM pick
             ON CONFLICT (event_id, endpoint_id) DO NOTHING",
        )
    };
    let prefix = if r.phase == 0 { "d" } else { "ev" };
    let last: Vec<(OffsetDateTime, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH pick AS (
             {source} AND ($4::timestamptz IS NULL OR ({prefix}.created_at, {prefix}.id) > ($4, $5))
             ORDER BY {prefix}.created_at, {prefix}.id LIMIT $6),
         done AS ({action})
         SELECT created_at, id FROM pick ORDER BY created_at DESC, id DESC LIMIT 1"
    )))
    .bind(&r.endpoint_id)
    .bind(r.since)
    .bind(r.until)
    .bind(r.cursor_at)
    .bind(&r.cursor_id)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let picked_all = last.is_empty();
    // A short batch is not proof of the end (a row locked meanwhile): the
    // phase ends when a batch finds nothing after the cursor.
    let (phase, cursor) = match (picked_all, r.phase, r.include_missed) {
        (false, phase, _) => (phase, last.into_iter().next()),
        (true, 0, true) => (1, None),
        (true, _, _) => (2, None),
    };
    sqlx::query(
        "UPDATE recoveries SET phase = LEAST($2, 1), cursor_at = $3, cursor_id = $4,
             status = CASE WHEN $2 >= 2 THEN 'completed' ELSE status END,
             completed_at = CASE WHEN $2 >= 2 THEN now() END
         WHERE id = $1",
    )
    .bind(&r.id)
    .bind(phase)
    .bind(cursor.as_ref().map(|c| c.0))
    .bind(cursor.as_ref().map(|c| c.1.as_str()))
    .execute(&mut *tx)
    .await?;
    before_commit();
    tx.commit().await?;
    Ok(true)
}
