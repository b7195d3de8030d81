//! Operators' holds (contract §14): while a hold is active, the scheduled
//! attempts it matches are parked (`scheduled` → `held`), those parked when
//! it is created by [`park_batch`], every later one by the worker's claim
//! itself (`attempts::claim_calls`), so an attempt coming due during the
//! hold never reaches the provider. Its release hands them back to the
//! schedule (`held` → `scheduled`), spread over a window.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::domain::{HoldId, HoldStatus, MerchantId};
use crate::timefmt;

/// The condition under which hold `h` matches attempt `a` of payment `p`
/// (a `NULL` filter matches everything). The error code is the one of the
/// call that scheduled the attempt: the transaction's previous attempt (a
/// first attempt has none, so only holds without an error code take it).
macro_rules! hold_matches {
    () => {
        "(h.provider IS NULL OR h.provider = p.provider)
         AND (h.merchant_id IS NULL OR h.merchant_id = p.merchant_id)
         AND (h.error_code IS NULL OR h.error_code = (SELECT prev.error_code FROM attempts prev
              WHERE prev.transaction_id = a.transaction_id AND prev.number = a.number - 1))"
    };
}
pub(crate) use hold_matches;

/// The hold object.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Hold {
    /// Always `hold`.
    pub object: String,
    pub id: HoldId,
    pub status: HoldStatus,
    /// Only attempts of payments with this provider (all when absent).
    pub provider: Option<String>,
    /// Only attempts of this merchant's payments (all when absent).
    pub merchant_id: Option<MerchantId>,
    /// Only retries scheduled after a call failed with this code.
    pub error_code: Option<String>,
    pub reason: String,
    /// Who created it (an operator key's id, or `system` for the CLI).
    pub created_by: String,
    /// Attempts parked when it was created.
    pub matched: i32,
    /// Attempts it holds now.
    pub held: i64,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub released_at: Option<OffsetDateTime>,
    pub released_by: Option<String>,
    /// The window, in seconds, its attempts were spread over on release.
    pub release_over_seconds: Option<f64>,
    /// Attempts its release scheduled again.
    pub released: Option<i32>,
}

const COLUMNS: &str = "'hold' AS object, h.id, h.status, h.provider, h.merchant_id, h.error_code, h.reason,
    h.created_by, h.matched,
    (SELECT count(*) FROM attempts WHERE hold_id = h.id AND status = 'held') AS held,
    h.created_at, h.released_at, h.released_by, h.release_over AS release_over_seconds, h.released";

/// What a new hold matches.
#[derive(Clone, Debug, Default)]
pub struct HoldFilter {
    pub provider: Option<String>,
    pub merchant_id: Option<MerchantId>,
    pub error_code: Option<String>,
}

/// Inserts an active hold. Once committed, every claim respects it.
pub async fn insert(
    conn: &mut PgConnection,
    filter: &HoldFilter,
    reason: &str,
    actor: &str,
) -> Result<HoldId, sqlx::Error> {
    let id = HoldId::generate();
    sqlx::query(
        "INSERT INTO holds (id, status, provider, merchant_id, error_code, reason, created_by)
         VALUES ($1, 'active', $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&filter.provider)
    .bind(&filter.merchant_id)
    .bind(&filter.error_code)
    .bind(reason)
    .bind(actor)
    .execute(conn)
    .await?;
    Ok(id)
}

/// `scheduled` → `held`: parks up to `limit` scheduled attempts that the
/// active hold `id` matches; answers how many. Attempts another
/// transaction has locked (a claim, a cancel) are skipped: if they stay
/// scheduled, the claim parks them when they come due.
pub async fn park_batch(conn: &mut PgConnection, id: &HoldId, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(concat!(
        "WITH pick AS (
             SELECT a.id FROM holds h, attempts a JOIN payments p ON p.id = a.payment_id
             WHERE h.id = $1 AND h.status = 'active' AND a.status = 'scheduled' AND ",
        hold_matches!(),
        " ORDER BY a.scheduled_at LIMIT $2 FOR UPDATE OF a SKIP LOCKED)
         UPDATE attempts a SET status = 'held', hold_id = $1, enqueued_at = NULL FROM pick
         WHERE a.id = pick.id AND a.status = 'scheduled'",
    ))
    .bind(id)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Notes how many attempts the hold parked when it was created.
pub async fn set_matched(conn: &mut PgConnection, id: &HoldId, matched: u64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE holds SET matched = $2 WHERE id = $1")
        .bind(id)
        .bind(i32::try_from(matched).unwrap_or(i32::MAX))
        .execute(conn)
        .await?;
    Ok(())
}

/// `active` → `released`: answers false when the hold was not active.
pub async fn release(
    conn: &mut PgConnection,
    id: &HoldId,
    actor: &str,
    over: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE holds SET status = 'released', released_at = now(), released_by = $2, release_over = $3
         WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .bind(actor)
    .bind(over.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Locks the payments of the attempts hold `id` parks, in id order (the
/// lock order everywhere: payment, then attempt).
pub async fn lock_payments(conn: &mut PgConnection, id: &HoldId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT p.id FROM payments p
         WHERE p.id IN (SELECT payment_id FROM attempts WHERE hold_id = $1 AND status = 'held')
         ORDER BY p.id FOR UPDATE",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// `held` → `scheduled`: hands hold `id`'s attempts back to the schedule,
/// due evenly over `over` from now in the order they were due (so a
/// provider back from an outage is not hit by all of them at once), and
/// tells their payments when; answers how many.
pub async fn unpark(conn: &mut PgConnection, id: &HoldId, over: std::time::Duration) -> Result<i64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "WITH ranked AS (
             SELECT id, row_number() OVER (ORDER BY scheduled_at, id) - 1 AS i, count(*) OVER () AS n
             FROM attempts WHERE hold_id = $1 AND status = 'held'),
         moved AS (
             UPDATE attempts a SET status = 'scheduled', enqueued_at = NULL,
                 scheduled_at = now() + make_interval(secs => $2 * ranked.i / ranked.n)
             FROM ranked WHERE a.id = ranked.id AND a.status = 'held'
             RETURNING a.payment_id, a.scheduled_at),
         told AS (
             UPDATE payments p SET next_attempt_at = moved.scheduled_at, updated_at = now() FROM moved
             WHERE p.id = moved.payment_id AND p.status = 'pending' AND p.next_attempt_at IS NOT NULL)
         SELECT count(*) FROM moved",
    )
    .bind(id)
    .bind(over.as_secs_f64())
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE holds SET released = $2 WHERE id = $1")
        .bind(id)
        .bind(i32::try_from(n).unwrap_or(i32::MAX))
        .execute(conn)
        .await?;
    Ok(n)
}

/// One hold.
pub async fn find(conn: &mut PgConnection, id: &HoldId) -> Result<Option<Hold>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM holds h WHERE h.id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Holds, newest first (`status` filters), and their number.
pub async fn list(
    pool: &PgPool,
    status: Option<HoldStatus>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Hold>, i64), sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM holds h WHERE ($1::text IS NULL OR h.status = $1)
         ORDER BY h.created_at DESC, h.id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM holds WHERE ($1::text IS NULL OR status = $1)")
        .bind(status)
        .fetch_one(&mut *tx)
        .await?;
    Ok((rows, total))
}
