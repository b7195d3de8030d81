//! Console sessions: a hash of the token, the key it acts as, and its expiry.

use sqlx::PgPool;

use crate::domain::{ApiKeyId, KeyKind, MerchantId, Principal};

/// Stores a new session for `key_id`, valid for `ttl`.
pub async fn create(
    pool: &PgPool,
    token_hash: &[u8],
    key_id: &ApiKeyId,
    ttl: std::time::Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO console_sessions (token_hash, key_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(token_hash)
    .bind(key_id)
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// The key of a live session: not expired, and its key not revoked.
pub async fn find(pool: &PgPool, token_hash: &[u8]) -> Result<Option<Principal>, sqlx::Error> {
    let row: Option<(ApiKeyId, KeyKind, Option<MerchantId>, bool)> = sqlx::query_as(
        "SELECT k.id, k.kind, k.merchant_id, k.livemode
           FROM console_sessions s JOIN api_keys k ON k.id = s.key_id
          WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(key_id, kind, merchant_id, livemode)| Principal { key_id, kind, merchant_id, livemode }))
}

/// Ends a session (signing out); true when there was one.
pub async fn delete(pool: &PgPool, token_hash: &[u8]) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

/// Forgets expired sessions, a batch at a time (run at each sign-in, so
/// the table holds about as many rows as there are live sessions).
pub async fn purge_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM console_sessions WHERE token_hash IN
           (SELECT token_hash FROM console_sessions WHERE expires_at <= now() LIMIT 100)",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
