//! Provider accounts (contract §12): a merchant's own credentials at a
//! provider, one per merchant, mode and provider. The credentials column
//! holds them sealed (see `secretbox`); this module never sees them in the
//! clear.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::domain::{MerchantId, ProviderAccountId, Scope};
use crate::timefmt;

/// The provider account object: never its credentials.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ProviderAccount {
    /// Always `provider_account`.
    pub object: String,
    /// `pa_…`
    pub id: ProviderAccountId,
    /// The provider it belongs to (`stripe`).
    pub provider: String,
    pub livemode: bool,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "'provider_account' AS object, id, provider, livemode, created_at";

/// What a provider call needs of an account: whose it is, and its sealed
/// credentials.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Sealed {
    pub merchant_id: MerchantId,
    pub livemode: bool,
    pub provider: String,
    pub credentials: String,
}

/// The unique index behind 409 `provider_account_exists`.
pub const ONE_PER_PROVIDER: &str = "provider_accounts_one";

/// Stores a new account; a second live account for the same merchant, mode
/// and provider violates [`ONE_PER_PROVIDER`].
pub async fn insert(
    conn: &mut PgConnection,
    id: &ProviderAccountId,
    scope: &Scope,
    provider: &str,
    sealed: &str,
) -> Result<ProviderAccount, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO provider_accounts (id, merchant_id, livemode, provider, credentials)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(provider)
    .bind(sealed)
    .fetch_one(conn)
    .await
}

/// The merchant's accounts in this mode, newest first.
pub async fn list(pool: &PgPool, scope: &Scope) -> Result<Vec<ProviderAccount>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_accounts
         WHERE merchant_id = $1 AND livemode = $2 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC"
    )))
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_all(pool)
    .await
}

/// One of the merchant's accounts in this mode.
pub async fn find(
    pool: &PgPool,
    scope: &Scope,
    id: &ProviderAccountId,
) -> Result<Option<ProviderAccount>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM provider_accounts
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 AND deleted_at IS NULL"
    )))
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_optional(pool)
    .await
}

/// The merchant's account at `provider` in this mode.
pub async fn active(
    conn: &mut PgConnection,
    scope: &Scope,
    provider: &str,
) -> Result<Option<ProviderAccountId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM provider_accounts
         WHERE merchant_id = $1 AND livemode = $2 AND provider = $3 AND deleted_at IS NULL",
    )
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(provider)
    .fetch_optional(conn)
    .await
}

/// True when `id` is an account of the merchant, mode and provider that is
/// not deleted: a payment method issued by a deleted account cannot be
/// charged any more.
pub async fn is_active(conn: &mut PgConnection, scope: &Scope, id: &ProviderAccountId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM provider_accounts
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 AND deleted_at IS NULL)",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .fetch_one(conn)
    .await
}

/// Deletes an account: its credentials are wiped, so nothing can use them
/// again. `false` when the merchant has no such account in this mode.
pub async fn delete(pool: &PgPool, scope: &Scope, id: &ProviderAccountId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE provider_accounts SET deleted_at = now(), credentials = NULL
         WHERE id = $1 AND merchant_id = $2 AND livemode = $3 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The sealed credentials of an account that is not deleted.
pub async fn sealed(pool: &PgPool, id: &ProviderAccountId) -> Result<Option<Sealed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT merchant_id, livemode, provider, credentials FROM provider_accounts
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}
