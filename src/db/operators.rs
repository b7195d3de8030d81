//! Operators' statements on single attempts (run a scheduled retry now, or
//! at another time) and the stuck-transaction list. Each change is guarded by the
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
