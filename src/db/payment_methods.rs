//! Stored payment methods: a provider's token, per merchant and mode.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::paging::{self, BY_TENANT, Cursor, Keyset, Page};
use crate::domain::{MethodKind, PaymentMethodId, ProviderAccountId, Scope};
use crate::timefmt;

/// The payment method object (contract §5).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PaymentMethod {
    /// Always `payment_method`.
    pub object: String,
    /// `pm_…`
    pub id: PaymentMethodId,
    pub livemode: bool,
    /// The provider that issued the token (`sandbox` or a configured gateway).
    pub provider: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: MethodKind,
    /// The provider's token: never a card number.
    pub token: String,
    /// `YYYY-MM`; after that month, payments with it fail with `expired_card`.
    pub expires_at: Option<String>,
    pub customer_id: Option<String>,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    /// The merchant's provider account that issued the token (Stripe's),
    /// the only account it is charged on.
    #[serde(skip)]
    pub provider_account_id: Option<ProviderAccountId>,
}

const COLUMNS: &str = "'payment_method' AS object, id, livemode, provider, type, token, expires_at, customer_id, \
                       created_at, provider_account_id";

/// What a new payment method is made of (already checked).
#[derive(Clone, Debug)]
pub struct NewPaymentMethod {
    pub provider: String,
    pub kind: MethodKind,
    pub token: String,
    pub expires_at: Option<String>,
    pub customer_id: Option<String>,
    pub provider_account_id: Option<ProviderAccountId>,
}

/// Stores a payment method.
pub async fn insert(
    conn: &mut PgConnection,
    scope: &Scope,
    m: &NewPaymentMethod,
) -> Result<PaymentMethod, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payment_methods (id, merchant_id, livemode, provider, type, token, expires_at, customer_id,
             provider_account_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    )))
    .bind(PaymentMethodId::generate())
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(&m.provider)
    .bind(m.kind)
    .bind(&m.token)
    .bind(&m.expires_at)
    .bind(&m.customer_id)
    .bind(&m.provider_account_id)
    .fetch_one(conn)
    .await
}

/// A live (not deleted) payment method of this tenant.
pub async fn find(
    conn: &mut PgConnection,
    scope: &Scope,
    id: &PaymentMethodId,
) -> Result<Option<PaymentMethod>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payment_methods
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 AND deleted_at IS NULL"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(conn)
    .await
}

/// The payment methods list's order (`payment_methods_list`); a deleted
/// method stays a cursor, so paging goes on past one deleted meanwhile.
const METHODS: Keyset =
    Keyset { table: "payment_methods", alias: "payment_methods", key: &["created_at", "id"], owner: BY_TENANT };

/// A page of the tenant's payment methods, newest first, whether more
/// follow and the total; `None` when the cursor is not one of the tenant's.
pub async fn list(
    pool: &PgPool,
    scope: &Scope,
    customer_id: Option<&str>,
    limit: i64,
    cursor: &Cursor<PaymentMethodId>,
) -> Result<Page<PaymentMethod>, sqlx::Error> {
    const FILTER: &str =
        "merchant_id = $1 AND livemode = $2 AND deleted_at IS NULL AND ($3::text IS NULL OR customer_id = $3)";
    let mut tx = super::snapshot(pool).await?;
    if !METHODS.admits(&mut tx, cursor, Some(scope.merchant_id.as_str()), Some(scope.livemode)).await? {
        return Ok(None);
    }
    let rows = paging::bind(
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payment_methods WHERE {FILTER} {}",
            METHODS.tail(cursor, 4)
        )))
        .bind(&scope.merchant_id)
        .bind(scope.livemode)
        .bind(customer_id),
        cursor,
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (rows, more) = paging::finish(rows, cursor, limit);
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM payment_methods WHERE {FILTER}")))
        .bind(&scope.merchant_id)
        .bind(scope.livemode)
        .bind(customer_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((rows, more, total)))
}

/// Deletes (hides) a payment method; false when there was none to delete.
pub async fn delete(conn: &mut PgConnection, scope: &Scope, id: &PaymentMethodId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payment_methods SET deleted_at = now()
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The provider account that issued a payment method, deleted or not (the
/// worker reads the rest of a method with its claim).
pub async fn account_of(
    conn: &mut PgConnection,
    id: &PaymentMethodId,
) -> Result<Option<ProviderAccountId>, sqlx::Error> {
    let found: Option<Option<ProviderAccountId>> =
        sqlx::query_scalar("SELECT provider_account_id FROM payment_methods WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(found.flatten())
}
