//! Operators' statements on single attempts (run a scheduled retry now, or
//! at another time), the stuck-transaction list, and the deployment-wide
//! gauges the scheduler reads for alerting. Each change is guarded by the
//! status it starts from, so a worker claiming the same attempt at the same
//! moment either wins (the change finds nothing: 409) or finds it changed.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::attempts::{ATTEMPT_COLUMNS, Attempt};
use super::transactions::Transaction;
use crate::domain::AttemptId;

/// `scheduled` → `scheduled`, due now and marked enqueued: the caller
/// writes its work message to the outbox in the same transaction, so it
/// runs at once rather than at the scheduler's next pass. `None` unless it
/// was scheduled.
pub async fn retry_now(conn: &mut PgConnection, id: &AttemptId) -> Result<Option<Attempt>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE attempts a SET scheduled_at = now(), enqueued_at = now()
         WHERE a.id = $1 AND a.status = 'scheduled' RETURNING {ATTEMPT_COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// `scheduled` → `scheduled` due at `at`, not enqueued (the scheduler
/// enqueues it when due; a message already queued for it finds it not due
/// and is dropped by the claim). `None` unless it was scheduled.
pub async fn reschedule(
    conn: &mut PgConnection,
    id: &AttemptId,
    at: OffsetDateTime,
) -> Result<Option<Attempt>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE attempts a SET scheduled_at = $2, enqueued_at = NULL
         WHERE a.id = $1 AND a.status = 'scheduled' RETURNING {ATTEMPT_COLUMNS}"
    )))
    .bind(id)
    .bind(at)
    .fetch_optional(conn)
    .await
}

const TRANSACTION_COLUMNS: &str = "'transaction' AS object, t.id, t.payment_id, t.type, t.amount, t.currency,
    t.status, t.provider_reference, t.error_code, t.failure_message, t.provider_code, t.reason,
    t.source_transaction_id, t.created_at, t.updated_at";

/// Transactions whose outcome is unknown, across the deployment, the
/// longest stuck first, and their number (an operator's work list).
pub async fn unknown_transactions(
    pool: &PgPool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Transaction>, i64), sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE t.status = 'unknown'
         ORDER BY t.updated_at, t.id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE status = 'unknown'").fetch_one(&mut *tx).await?;
    Ok((rows, total))
}

/// One transaction object, locked (the caller holds its payment's lock).
pub async fn lock_transaction(
    conn: &mut PgConnection,
    id: &crate::domain::TransactionId,
) -> Result<Option<Transaction>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE t.id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The figures operators alert on, across the deployment.
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct Gauges {
    /// Attempts parked by holds.
    pub attempts_held: i64,
    /// Active holds, and the age of the oldest in seconds.
    pub holds_active: i64,
    pub oldest_hold_seconds: f64,
    /// Transactions whose outcome is unknown, and how long the oldest has
    /// been (since its last change), in seconds.
    pub transactions_unknown: i64,
    pub oldest_unknown_seconds: f64,
    /// Webhook endpoints that are disabled.
    pub endpoints_disabled: i64,
}

/// Reads [`Gauges`] in one round trip; each count walks a partial index
/// that holds only the rows it counts (empty when all is well).
pub async fn gauges(pool: &PgPool) -> Result<Gauges, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM attempts WHERE status = 'held') AS attempts_held,
             (SELECT count(*) FROM holds WHERE status = 'active') AS holds_active,
             (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM holds
              WHERE status = 'active') AS oldest_hold_seconds,
             (SELECT count(*) FROM transactions WHERE status = 'unknown') AS transactions_unknown,
             (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at)), 0)::float8 FROM transactions
              WHERE status = 'unknown') AS oldest_unknown_seconds,
             (SELECT count(*) FROM webhook_endpoints WHERE status = 'disabled') AS endpoints_disabled",
    )
    .fetch_one(pool)
    .await
}
