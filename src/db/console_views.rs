//! Reads only the console shows: a payment's deliveries (its timeline) and
//! every merchant's endpoints (operators' health overview).

use sqlx::PgPool;

use super::webhooks::{DELIVERY_SELECT, Delivery, ENDPOINT_COLUMNS, Endpoint};
use crate::domain::{MerchantId, PaymentId, Scope};

/// The deliveries of every event about one payment of a tenant, newest first.
pub async fn deliveries_of_payment(
    pool: &PgPool,
    scope: &Scope,
    payment: &PaymentId,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{DELIVERY_SELECT} WHERE ev.payment_id = $1 AND ev.merchant_id = $2 AND ev.livemode = $3
         ORDER BY d.created_at DESC, d.id DESC LIMIT $4"
    )))
    .bind(payment)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An endpoint with the merchant that owns it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OwnedEndpoint {
    /// The owner.
    pub merchant_id: MerchantId,
    /// The endpoint.
    #[sqlx(flatten)]
    pub endpoint: Endpoint,
}

/// Every merchant's endpoints, failing ones first (the ones an operator
/// looks for), then newest; with the total.
pub async fn all_endpoints(pool: &PgPool, limit: i64, offset: i64) -> Result<(Vec<OwnedEndpoint>, i64), sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT merchant_id, {ENDPOINT_COLUMNS} FROM webhook_endpoints
         ORDER BY (failing_since IS NULL AND disabled_at IS NULL), created_at DESC, id DESC LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&mut *tx).await?;
    Ok((rows, total))
}
