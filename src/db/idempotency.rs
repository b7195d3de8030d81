//! `Idempotency-Key`: the first answer of a keyed request is stored in the
//! same transaction as its effects, so a retry after a crash either finds the
//! answer or finds nothing was done. A transaction-scoped advisory lock on the
//! key tells a concurrent duplicate that the first is still in flight; the
//! key's row itself is only ever inserted, never overwritten while live, so
//! requests that store their answer without the lock (creates, written by
//! the group commit) cannot both win either.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::domain::MerchantId;

/// How long a stored answer is replayed.
pub const RETENTION_HOURS: i32 = 24;

/// What a keyed request should do.
#[derive(Debug)]
pub enum Claim {
    /// First time: do the work and [`store`] its answer before commit.
    Fresh,
    /// Seen before with the same request: answer this again.
    Replay { status: u16, body: Value },
    /// Seen before with a different request.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

/// A digest of what identifies the request (operation and body).
pub fn fingerprint(operation: &str, body: &Value) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(operation.as_bytes());
    h.update([0]);
    h.update(body.to_string().as_bytes());
    h.finalize().to_vec()
}

/// Claims `key` for this transaction. `legacy` is how the same key was
/// stored before keys were scoped by mode and key kind: an answer stored
/// under it (at most [`RETENTION_HOURS`] old) is still replayed, so a
/// client retrying across the upgrade is not charged twice.
pub async fn claim(
    conn: &mut PgConnection,
    merchant: &MerchantId,
    key: &str,
    legacy: &str,
    fingerprint: &[u8],
) -> Result<Claim, sqlx::Error> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind(merchant)
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Claim::InFlight);
    }
    let row: Option<(Vec<u8>, i32, Value)> = sqlx::query_as(
        "SELECT fingerprint, response_status, response_body FROM idempotency_keys
         WHERE merchant_id = $1 AND key IN ($2, $4) AND created_at > now() - make_interval(hours => $3)
         ORDER BY key = $2 DESC LIMIT 1",
    )
    .bind(merchant)
    .bind(key)
    .bind(RETENTION_HOURS)
    .bind(legacy)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => Claim::Fresh,
        Some((fp, _, _)) if fp != fingerprint => Claim::Mismatch,
        Some((_, status, body)) => Claim::Replay { status: status as u16, body },
    })
}

/// Answers what a keyed request should do without holding anything: the
/// key's lock is tried and released in the same statement. For requests
/// whose answer is stored with their effects in one statement (creates, by
/// the group commit), which then claims the key itself. `legacy` as for [`claim`].
pub async fn peek(
    conn: &mut PgConnection,
    merchant: &MerchantId,
    key: &str,
    legacy: &str,
    fingerprint: &[u8],
) -> Result<Claim, sqlx::Error> {
    let (free, fp, status, body): (bool, Option<Vec<u8>>, Option<i32>, Option<Value>) = sqlx::query_as(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0)), k.fingerprint, k.response_status,
             k.response_body
         FROM (SELECT 1) one LEFT JOIN LATERAL (
             SELECT * FROM idempotency_keys
             WHERE merchant_id = $1 AND key IN ($2, $4) AND created_at > now() - make_interval(hours => $3)
             ORDER BY key = $2 DESC LIMIT 1) k ON true",
    )
    .bind(merchant)
    .bind(key)
    .bind(RETENTION_HOURS)
    .bind(legacy)
    .fetch_one(conn)
    .await?;
    Ok(match (fp, status, body) {
        (Some(fp), _, _) if fp != fingerprint => Claim::Mismatch,
        (Some(_), Some(status), Some(body)) => Claim::Replay { status: status as u16, body },
        _ if !free => Claim::InFlight,
        _ => Claim::Fresh,
    })
}

/// Stores the answer of a fresh keyed request (replacing an expired one);
/// false when a live answer holds the key (a request that claimed it
/// without the lock, see [`peek`]): the caller must not commit.
pub async fn store(
    conn: &mut PgConnection,
    merchant: &MerchantId,
    key: &str,
    fingerprint: &[u8],
    status: u16,
    body: &Value,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, key, fingerprint, response_status, response_body)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (merchant_id, key) DO UPDATE SET fingerprint = $3, response_status = $4,
             response_body = $5, created_at = now()
             WHERE idempotency_keys.created_at <= now() - make_interval(hours => $6)",
    )
    .bind(merchant)
    .bind(key)
    .bind(fingerprint)
    .bind(i32::from(status))
    .bind(body)
    .bind(RETENTION_HOURS)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes answers past their retention.
pub async fn purge_expired(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)")
        .bind(RETENTION_HOURS)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
