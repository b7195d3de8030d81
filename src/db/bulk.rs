//! Bulk cancel of scheduled attempts (contract §14), in bounded batches of
//! set-based statements: each batch picks attempts and locks their
//! payments (one statement), cancels the attempts, fails their
//! transactions, fails the charges' payments and gives reserved capture
//! amounts back (one statement each), whatever the batch's size.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::attempts::{ATTEMPT_COLUMNS, Attempt};
use super::payments::PaymentRow;
use crate::domain::{AttemptId, FailureCode, MerchantId, PaymentId, TransactionKind};

/// Which scheduled attempts a bulk cancel takes. `None` matches all.
#[derive(Clone, Debug, Default)]
pub struct BulkFilter {
    pub merchant_id: Option<MerchantId>,
    /// A merchant key's mode (operators: both).
    pub livemode: Option<bool>,
    pub provider: Option<String>,
    /// The code of the failed call that scheduled the retry.
    pub error_code: Option<String>,
    pub scheduled_before: Option<OffsetDateTime>,
    pub scheduled_after: Option<OffsetDateTime>,
}

/// Scheduled attempts matching `$1`…`$6`. A retry of a call whose outcome
/// is unknown is never taken (contract §12: cancelling it could hide a charge).
const MATCHING: &str =
    "attempts a JOIN payments p ON p.id = a.payment_id JOIN transactions t ON t.id = a.transaction_id
    WHERE a.status = 'scheduled' AND t.status <> 'unknown'
      AND ($1::text IS NULL OR p.merchant_id = $1) AND ($2::boolean IS NULL OR p.livemode = $2)
      AND ($3::text IS NULL OR p.provider = $3)
      AND ($4::text IS NULL OR $4 = (SELECT prev.error_code FROM attempts prev
           WHERE prev.transaction_id = a.transaction_id AND prev.number = a.number - 1))
      AND ($5::timestamptz IS NULL OR a.scheduled_at < $5) AND ($6::timestamptz IS NULL OR a.scheduled_at > $6)";

macro_rules! bind_filter {
    ($q:expr, $f:expr) => {
        $q.bind(&$f.merchant_id)
            .bind($f.livemode)
            .bind(&$f.provider)
            .bind(&$f.error_code)
            .bind($f.scheduled_before)
            .bind($f.scheduled_after)
    };
}

/// How many scheduled attempts match (a dry run).
pub async fn count(conn: &mut PgConnection, f: &BulkFilter) -> Result<i64, sqlx::Error> {
    bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {MATCHING}"))), f)
        .fetch_one(conn)
        .await
}

/// Up to `limit` matching attempts, with their payments locked in id order
/// (the lock order everywhere: payment, then attempt). An attempt a worker
/// claims meanwhile is left out by the cancel's guard.
pub async fn pick(conn: &mut PgConnection, f: &BulkFilter, limit: i64) -> Result<Vec<AttemptId>, sqlx::Error> {
    bind_filter!(
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH pick AS (SELECT a.id, a.payment_id FROM {MATCHING} ORDER BY a.scheduled_at, a.id LIMIT $7),
             locked AS (SELECT p.id FROM payments p WHERE p.id IN (SELECT payment_id FROM pick) ORDER BY p.id
                        FOR UPDATE OF p)
             SELECT pick.id FROM pick JOIN locked ON locked.id = pick.payment_id"
        ))),
        f
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A canceled attempt, with what its transaction was.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Canceled {
    #[sqlx(flatten)]
    pub attempt: Attempt,
    pub kind: TransactionKind,
    pub amount: i64,
}

/// `scheduled` → `canceled` for `ids` (those still scheduled), and their
/// transactions `pending` → `failed` with `retry_canceled` and `message`,
/// in one statement; answers the attempts canceled.
pub async fn cancel(
    conn: &mut PgConnection,
    ids: &[AttemptId],
    reason: &str,
    message: &str,
) -> Result<Vec<Canceled>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH a AS (
             UPDATE attempts a SET status = 'canceled', finished_at = now(), error_code = 'retry_canceled',
                 cancellation_reason = $2
             WHERE a.id = ANY($1) AND a.status = 'scheduled' RETURNING a.*),
         t AS (
             UPDATE transactions t SET status = 'failed', error_code = $4, failure_message = $3, updated_at = now()
             FROM a WHERE t.id = a.transaction_id AND t.status = 'pending'
             RETURNING t.id, t.type, t.amount)
         SELECT {ATTEMPT_COLUMNS}, t.type AS kind, t.amount FROM a JOIN t ON t.id = a.transaction_id"
    )))
    .bind(ids)
    .bind(reason)
    .bind(message)
    .bind(FailureCode::RetryCanceled)
    .fetch_all(conn)
    .await
}

/// `pending` → `failed` with `code` and `message` for the payments of
/// canceled charges (the set-based twin of `payment_changes::fail`);
/// answers the payments changed.
pub async fn fail_payments(
    conn: &mut PgConnection,
    ids: &[&PaymentId],
    code: FailureCode,
    message: &str,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = 'failed', error_code = $2, failure_message = $3, next_attempt_at = NULL,
             updated_at = now()
         WHERE id = ANY($1) AND status = 'pending' RETURNING *",
    )
    .bind(ids)
    .bind(code)
    .bind(message)
    .fetch_all(conn)
    .await
}

/// Captures that will not happen: what each reserved is capturable again
/// (the set-based twin of `payment_changes::release_capture`).
pub async fn release_captures(conn: &mut PgConnection, captures: &[(&PaymentId, i64)]) -> Result<(), sqlx::Error> {
    let ids: Vec<&PaymentId> = captures.iter().map(|(p, _)| *p).collect();
    let amounts: Vec<i64> = captures.iter().map(|(_, a)| *a).collect();
    sqlx::query(
        "UPDATE payments p SET amount_capturable = p.amount_capturable + c.amount, updated_at = now()
         FROM (SELECT id, sum(amount)::int8 AS amount FROM unnest($1::text[], $2::int8[]) AS i(id, amount)
               GROUP BY id) c
         WHERE p.id = ANY($1) AND p.id = c.id",
    )
    .bind(ids)
    .bind(amounts)
    .execute(conn)
    .await?;
    Ok(())
}
