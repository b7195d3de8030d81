//! The audit log of payments. A trigger writes one row per change of a
//! payment (migration 0006); the code only says who acts and why, for the
//! rest of its transaction.

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::domain::PaymentId;
use crate::timefmt;

/// Names the actor (a key id, or [`crate::domain::SYSTEM_ACTOR`]) and the action of every payment
/// change in the rest of this transaction.
pub async fn act(conn: &mut PgConnection, actor: &str, action: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('payd.actor', $1, true), set_config('payd.action', $2, true)")
        .bind(actor)
        .bind(action)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`act`] for an operator's action with its reason: every audit entry of
/// the rest of this transaction keeps `reason` too.
pub async fn act_because(conn: &mut PgConnection, actor: &str, action: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('payd.actor', $1, true), set_config('payd.action', $2, true),
             set_config('payd.reason', $3, true)",
    )
    .bind(actor)
    .bind(action)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// One audit log entry: `changes` maps each changed field to `{"from", "to"}`.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// `aud_<n>`: the entry's place in its payment's log, from `aud_1`. The
    /// log only grows, so a number always names the same entry (a cursor).
    pub id: String,
    /// Always `audit_log_entry`.
    pub object: String,
    #[serde(serialize_with = "timefmt::ser")]
    pub at: OffsetDateTime,
    /// The API key id (`key_…`) that made the change, or `system`.
    pub actor: String,
    /// What was done, e.g. `payment.create`, `payment.capture`, `provider.outcome`.
    pub action: String,
    /// Changed fields: `{"field": {"from": …, "to": …}}`.
    pub changes: Value,
    /// Why, when an operator's action made the change (`reason` of the
    /// toolkit's routes); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A payment's audit log, oldest first, and its length.
pub async fn list(
    pool: &PgPool,
    payment: &PaymentId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditEntry>, i64), sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let rows = sqlx::query_as(
        "SELECT 'aud_' || row_number() OVER (ORDER BY id) AS id, 'audit_log_entry' AS object,
                at, actor, action, changes, reason
         FROM audit_log WHERE payment_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(payment)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE payment_id = $1")
        .bind(payment)
        .fetch_one(&mut *tx)
        .await?;
    Ok((rows, total))
}
