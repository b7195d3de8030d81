//! The sandbox provider's ledger (it plays the provider's own database):
//! one row per idempotency key, counting calls, with the final outcome once
//! there is one. Transient failures are calls, not charges.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// One idempotency key the sandbox has seen.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SandboxCharge {
    /// The idempotency key the calls carried (payd's transaction id).
    pub idempotency_key: String,
    /// `purchase`, `authorize`, `capture`, `void` or `refund`.
    pub operation: String,
    /// The token the call charged.
    pub payment_method_id: String,
    /// In minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The final outcome; `None` while every call failed transiently.
    pub outcome: Option<Value>,
    /// How many calls carried this key.
    pub calls: i32,
}

/// What the ledger knows of a call.
pub struct Call<'a> {
    pub key: &'a str,
    pub operation: &'a str,
    pub payment_method_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
}

/// What the ledger holds for `key`: `None` when no call carried it,
/// `Some(None)` when every call failed transiently (nothing was done).
pub async fn outcome_of(pool: &PgPool, key: &str) -> Result<Option<Option<Value>>, sqlx::Error> {
    sqlx::query_scalar("SELECT outcome FROM sandbox_charges WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// Counts a call; answers its number (1 for the first), the final outcome
/// if one was recorded before, and the seconds since the first call.
pub async fn count_call(conn: &mut PgConnection, call: &Call<'_>) -> Result<(i32, Option<Value>, f64), sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO sandbox_charges (idempotency_key, operation, payment_method_id, amount, currency, outcome)
         VALUES ($1, $2, $3, $4, $5, NULL)
         ON CONFLICT (idempotency_key) DO UPDATE SET calls = sandbox_charges.calls + 1
         RETURNING calls, outcome, EXTRACT(EPOCH FROM now() - created_at)::float8",
    )
    .bind(call.key)
    .bind(call.operation)
    .bind(call.payment_method_id)
    .bind(call.amount)
    .bind(call.currency)
    .fetch_one(conn)
    .await
}

/// Counts calls whose outcome is known up front and records each unless an
/// earlier call recorded one; answers the outcomes the provider stands by,
/// in order. One statement for many calls (with distinct keys) instead of
/// [`count_call`] + [`settle`] for each.
pub async fn call_once_all(conn: &mut PgConnection, calls: &[(&Call<'_>, &Value)]) -> Result<Vec<Value>, sqlx::Error> {
    let keys: Vec<&str> = calls.iter().map(|(c, _)| c.key).collect();
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "INSERT INTO sandbox_charges (idempotency_key, operation, payment_method_id, amount, currency, outcome)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::jsonb[])
         ON CONFLICT (idempotency_key) DO UPDATE
             SET calls = sandbox_charges.calls + 1, outcome = COALESCE(sandbox_charges.outcome, EXCLUDED.outcome)
         RETURNING idempotency_key, outcome",
    )
    .bind(&keys)
    .bind(calls.iter().map(|(c, _)| c.operation).collect::<Vec<_>>())
    .bind(calls.iter().map(|(c, _)| c.payment_method_id).collect::<Vec<_>>())
    .bind(calls.iter().map(|(c, _)| c.amount).collect::<Vec<_>>())
    .bind(calls.iter().map(|(c, _)| c.currency).collect::<Vec<_>>())
    .bind(calls.iter().map(|(_, o)| (*o).clone()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let mut by_key: std::collections::HashMap<String, Value> = rows.into_iter().collect();
    keys.iter().map(|k| by_key.remove(*k).ok_or(sqlx::Error::RowNotFound)).collect()
}

/// Records the final outcome unless one is there already; answers the one
/// the provider stands by.
pub async fn settle(conn: &mut PgConnection, key: &str, outcome: &Value) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sandbox_charges SET outcome = COALESCE(outcome, $2) WHERE idempotency_key = $1 RETURNING outcome",
    )
    .bind(key)
    .bind(outcome)
    .fetch_one(conn)
    .await
}

/// Every key the sandbox has seen, oldest first.
pub async fn calls(pool: &PgPool) -> Result<Vec<SandboxCharge>, sqlx::Error> {
    sqlx::query_as(
        "SELECT idempotency_key, operation, payment_method_id, amount, currency, outcome, calls
         FROM sandbox_charges ORDER BY created_at, idempotency_key",
    )
    .fetch_all(pool)
    .await
}
