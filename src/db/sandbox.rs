//! The sandbox provider's ledger (it plays the provider's own database).

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// One charge or refund the sandbox performed.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SandboxCharge {
    pub idempotency_key: String,
    pub operation: String,
    pub payment_method_id: String,
    pub amount: i64,
    pub currency: String,
    pub outcome: Value,
    /// How many calls carried this key (1 + replays).
    pub calls: i32,
}

/// Records the first outcome for a key, or answers the stored one (counting
/// the call). The returned value is the outcome the provider stands by.
pub async fn record_or_replay(
    conn: &mut PgConnection,
    key: &str,
    operation: &str,
    payment_method_id: &str,
    amount: i64,
    currency: &str,
    outcome: &Value,
) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO sandbox_charges (idempotency_key, operation, payment_method_id, amount, currency, outcome)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (idempotency_key) DO UPDATE SET calls = sandbox_charges.calls + 1
         RETURNING outcome",
    )
    .bind(key)
    .bind(operation)
    .bind(payment_method_id)
    .bind(amount)
    .bind(currency)
    .bind(outcome)
    .fetch_one(conn)
    .await
}

/// Every ledger entry, oldest first (for tests and operators).
pub async fn all(pool: &PgPool) -> Result<Vec<SandboxCharge>, sqlx::Error> {
    sqlx::query_as(
        "SELECT idempotency_key, operation, payment_method_id, amount, currency, outcome, calls
         FROM sandbox_charges ORDER BY created_at",
    )
    .fetch_all(pool)
    .await
}
