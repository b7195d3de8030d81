//! Refunds: a refund row names its transaction, which holds the amount and
//! the status.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::domain::{Currency, PaymentId, RefundId, TransactionId, TransactionStatus};
use crate::timefmt;

/// The refund object.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Refund {
    /// Always `refund`.
    pub object: String,
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub amount: i64,
    pub currency: Currency,
    pub status: TransactionStatus,
    pub reason: Option<String>,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
}

const SELECT: &str =
    "SELECT 'refund' AS object, r.id, r.payment_id, t.amount, t.currency, t.status, r.reason, r.created_at
     FROM refunds r JOIN transactions t ON t.id = r.transaction_id";

/// The refunds of one payment, oldest first.
pub async fn of_payment(conn: &mut PgConnection, payment: &PaymentId) -> Result<Vec<Refund>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE r.payment_id = $1 ORDER BY r.created_at, r.id")))
        .bind(payment)
        .fetch_all(conn)
        .await
}

/// Records the refund of a pending refund transaction; answers it.
pub async fn insert(
    conn: &mut PgConnection,
    payment: &PaymentId,
    transaction: &TransactionId,
    reason: Option<&str>,
) -> Result<Refund, sqlx::Error> {
    sqlx::query_as(
        "WITH r AS (INSERT INTO refunds (id, payment_id, transaction_id, reason) VALUES ($1, $2, $3, $4)
             RETURNING id, payment_id, transaction_id, reason, created_at)
         SELECT 'refund' AS object, r.id, r.payment_id, t.amount, t.currency, t.status, r.reason, r.created_at
         FROM r JOIN transactions t ON t.id = r.transaction_id",
    )
    .bind(RefundId::generate())
    .bind(payment)
    .bind(transaction)
    .bind(reason)
    .fetch_one(conn)
    .await
}
