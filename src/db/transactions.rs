//! Transactions: one row per money movement of a payment (authorize,
//! capture, purchase, void, refund, chargeback, chargeback reversal). The
//! payment's amounts are the sums of its succeeded transactions.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::paging::{self, BY_PAYMENT, Cursor, Keyset, Page};
use crate::domain::messages::ATTEMPTS_QUEUE;
use crate::domain::{
    Amount, AttemptId, Currency, FailureCode, PaymentId, TransactionId, TransactionKind, TransactionStatus, WorkMessage,
};
use crate::timefmt;

/// The transaction object (contract §4).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Transaction {
    /// Always `transaction`.
    pub object: String,
    pub id: TransactionId,
    pub payment_id: PaymentId,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: TransactionKind,
    pub amount: i64,
    pub currency: Currency,
    pub status: TransactionStatus,
    pub provider_reference: Option<String>,
    pub error_code: Option<FailureCode>,
    pub failure_message: Option<String>,
    /// The provider's own code for a decline (Stripe's `decline_code`).
    pub provider_code: Option<String>,
    /// Why (refunds and chargebacks).
    pub reason: Option<String>,
    /// The chargeback a `chargeback_reversal` reverses.
    pub source_transaction_id: Option<TransactionId>,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "'transaction' AS object, id, payment_id, type, amount, currency, status, provider_reference,
    error_code, failure_message, provider_code, reason, source_transaction_id, created_at, updated_at";

/// Inserts a pending transaction, its first attempt (scheduled now, marked
/// enqueued) and the outbox message that runs it, in one round trip;
/// answers the transaction. The caller rings the outbox after the commit.
pub async fn insert_scheduled(
    conn: &mut PgConnection,
    payment: &PaymentId,
    kind: TransactionKind,
    amount: Amount,
    currency: Currency,
    reason: Option<&str>,
) -> Result<TransactionId, sqlx::Error> {
    let id = TransactionId::generate();
    let attempt = AttemptId::generate();
    sqlx::query(
        "WITH txn AS (
             INSERT INTO transactions (id, payment_id, type, amount, currency, status, reason)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)),
         attempt AS (
             INSERT INTO attempts (id, payment_id, transaction_id, number, status, scheduled_at, enqueued_at)
             VALUES ($7, $2, $1, 1, 'scheduled', now(), now()))
         INSERT INTO outbox (queue, payload) VALUES ($8, $9)",
    )
    .bind(&id)
    .bind(payment)
    .bind(kind)
    .bind(amount)
    .bind(currency)
    .bind(reason)
    .bind(&attempt)
    .bind(ATTEMPTS_QUEUE)
    .bind(WorkMessage::run(&attempt))
    .execute(conn)
    .await?;
    Ok(id)
}

/// Records a transaction that needs no provider call (chargebacks and their
/// reversals): succeeded at once.
pub async fn record(
    conn: &mut PgConnection,
    payment: &PaymentId,
    kind: TransactionKind,
    amount: i64,
    currency: Currency,
    reason: Option<&str>,
    source: Option<&TransactionId>,
) -> Result<Transaction, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO transactions (id, payment_id, type, amount, currency, status, reason, source_transaction_id)
         VALUES ($1, $2, $3, $4, $5, 'succeeded', $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(TransactionId::generate())
    .bind(payment)
    .bind(kind)
    .bind(amount)
    .bind(currency)
    .bind(reason)
    .bind(source)
    .fetch_one(conn)
    .await
}

/// A transaction row, as workers need it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: TransactionId,
    pub payment_id: PaymentId,
    #[sqlx(rename = "type")]
    pub kind: TransactionKind,
    pub amount: i64,
    pub currency: Currency,
}

/// Loads a transaction.
pub async fn get(conn: &mut PgConnection, id: &TransactionId) -> Result<Option<TransactionRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, payment_id, type, amount, currency FROM transactions WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One transaction object of a payment.
pub async fn find(
    conn: &mut PgConnection,
    payment: &PaymentId,
    id: &TransactionId,
) -> Result<Option<Transaction>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM transactions WHERE id = $1 AND payment_id = $2")))
        .bind(id)
        .bind(payment)
        .fetch_optional(conn)
        .await
}

/// The transactions list's order; a cursor is one of the payment's.
const TRANSACTIONS: Keyset =
    Keyset { table: "transactions", alias: "transactions", key: &["created_at", "id"], owner: BY_PAYMENT };

/// A payment's transactions, newest first, whether more follow and their
/// number; `None` when the cursor is not one of them.
pub async fn list(
    pool: &PgPool,
    payment: &PaymentId,
    limit: i64,
    cursor: &Cursor<TransactionId>,
) -> Result<Page<Transaction>, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    if !TRANSACTIONS.admits(&mut tx, cursor, Some(payment.as_str()), None).await? {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM transactions WHERE payment_id = $1 {}", TRANSACTIONS.tail(cursor, 2));
    let rows =
        paging::bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(payment), cursor, limit).fetch_all(&mut *tx).await?;
    let (rows, more) = paging::finish(rows, cursor, limit);
    let total = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE payment_id = $1")
        .bind(payment)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((rows, more, total)))
}

/// `pending` or `unknown` → `status`: settles a transaction with the
/// provider's reference, or the failure's code and message; false when it
/// was already settled.
pub async fn settle(
    conn: &mut PgConnection,
    id: &TransactionId,
    status: TransactionStatus,
    provider_reference: Option<&str>,
    error: Option<(FailureCode, &str)>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE transactions SET status = $2, provider_reference = COALESCE($3, provider_reference), error_code = $4,
             failure_message = $5, updated_at = now()
         WHERE id = $1 AND status IN ('pending', 'unknown')",
    )
    .bind(id)
    .bind(status)
    .bind(provider_reference)
    .bind(error.map(|e| e.0))
    .bind(error.map(|e| e.1))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `pending` → `unknown`: a call's outcome could not be learned (contract §12).
pub async fn mark_unknown(conn: &mut PgConnection, id: &TransactionId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE transactions SET status = 'unknown', updated_at = now() WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether the transaction's outcome is unknown.
pub async fn is_unknown(conn: &mut PgConnection, id: &TransactionId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM transactions WHERE id = $1 AND status = 'unknown')")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Any status but `succeeded` → `succeeded`: the provider reports a success
/// payd had not recorded (contract §12); false when the transaction had
/// succeeded already.
pub async fn settle_late_success(
    conn: &mut PgConnection,
    id: &TransactionId,
    reference: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE transactions SET status = 'succeeded', provider_reference = $2, error_code = NULL,
             failure_message = NULL, updated_at = now()
         WHERE id = $1 AND status <> 'succeeded'",
    )
    .bind(id)
    .bind(reference)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Notes the provider's reference on a transaction still pending.
pub async fn set_provider_reference(
    conn: &mut PgConnection,
    id: &TransactionId,
    reference: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE transactions SET provider_reference = $2, updated_at = now()
         WHERE id = $1 AND status IN ('pending', 'unknown')",
    )
    .bind(id)
    .bind(reference)
    .execute(conn)
    .await?;
    Ok(())
}

/// The provider's reference of a transaction (a Stripe PaymentIntent,
/// stored before it is confirmed).
pub async fn provider_reference(pool: &PgPool, id: &TransactionId) -> Result<Option<String>, sqlx::Error> {
    let found: Option<Option<String>> = sqlx::query_scalar("SELECT provider_reference FROM transactions WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(found.flatten())
}

/// Notes the provider's own code for a decline, beside payd's.
pub async fn set_provider_code<'c, E: sqlx::PgExecutor<'c>>(
    conn: E,
    id: &TransactionId,
    code: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE transactions SET provider_code = $2 WHERE id = $1").bind(id).bind(code).execute(conn).await?;
    Ok(())
}

/// The transaction of one of `kinds` with the provider reference
/// `reference` (the charge a Stripe PaymentIntent stands for).
pub async fn by_provider_reference(
    conn: &mut PgConnection,
    reference: &str,
    kinds: &[TransactionKind],
) -> Result<Option<TransactionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, payment_id, type, amount, currency FROM transactions
         WHERE provider_reference = $1 AND type = ANY($2) ORDER BY created_at LIMIT 1",
    )
    .bind(reference)
    .bind(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
    .fetch_optional(conn)
    .await
}

/// The sum of a payment's transactions of one type still in flight:
/// pending, or unknown (the money may have moved: a refund whose outcome is
/// unknown keeps its amount reserved).
pub async fn pending_sum(
    conn: &mut PgConnection,
    payment: &PaymentId,
    kind: TransactionKind,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(amount), 0)::bigint FROM transactions
         WHERE payment_id = $1 AND type = $2 AND status IN ('pending', 'unknown')",
    )
    .bind(payment)
    .bind(kind)
    .fetch_one(conn)
    .await
}

/// True when a payment has a transaction of this type in flight (pending,
/// or unknown).
pub async fn pending_exists(
    conn: &mut PgConnection,
    payment: &PaymentId,
    kind: TransactionKind,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM transactions WHERE payment_id = $1 AND type = $2
           AND status IN ('pending', 'unknown'))",
    )
    .bind(payment)
    .bind(kind)
    .fetch_one(conn)
    .await
}

/// The provider's reference of the payment's succeeded charge
/// (purchase or authorization): what captures, voids and refunds act on.
pub async fn charge_reference(conn: &mut PgConnection, payment: &PaymentId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT provider_reference FROM transactions
         WHERE payment_id = $1 AND type IN ('purchase', 'authorize') AND provider_reference IS NOT NULL
         ORDER BY created_at LIMIT 1",
    )
    .bind(payment)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// The charge transaction (purchase or authorization) of a payment.
pub async fn charge_of(conn: &mut PgConnection, payment: &PaymentId) -> Result<Option<TransactionId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM transactions WHERE payment_id = $1 AND type IN ('purchase', 'authorize')
         ORDER BY created_at LIMIT 1",
    )
    .bind(payment)
    .fetch_optional(conn)
    .await
}

/// True when the chargeback `source` has been reversed.
pub async fn is_reversed(conn: &mut PgConnection, source: &TransactionId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM transactions WHERE source_transaction_id = $1 AND type = 'chargeback_reversal')",
    )
    .bind(source)
    .fetch_one(conn)
    .await
}
