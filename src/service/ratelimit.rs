//! Rate limits held for the whole deployment (contract §11): with N api
//! processes a key still gets `rate_limit.per_minute`, not N times it. Each
//! request advances the key's bucket in PostgreSQL ([`crate::db::ratelimits`]);
//! the bucket is named by a hash of the key as authentication parses it.

use sha2::{Digest, Sha256};

use super::Ctx;

/// What the shared bucket says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Let through.
    pub allowed: bool,
    /// Requests the key may still send at once.
    pub remaining: u64,
    /// When refused: whole seconds until one more gets through.
    pub retry_after: u64,
}

/// Counts one request of `key` against `per_minute` with bursts of `burst`;
/// `None` when PostgreSQL cannot be asked (the caller decides alone then).
pub async fn take(ctx: &Ctx, key: &str, per_minute: u32, burst: u32) -> Option<Decision> {
    let bucket = Sha256::digest(key.as_bytes());
    let interval = 60.0 / f64::from(per_minute.max(1));
    let tolerance = interval * f64::from(burst.max(1));
    let taken = crate::db::ratelimits::take(&ctx.db, &bucket, interval, tolerance).await;
    let answer = match taken {
        Ok(Some(ahead)) => {
            let remaining = ((tolerance - ahead) / interval + 1e-9).floor().max(0.0) as u64;
            Decision { allowed: true, remaining, retry_after: 0 }
        }
        Ok(None) => {
            let ahead = crate::db::ratelimits::ahead(&ctx.db, &bucket).await.ok()?;
            let wait = (ahead + interval - tolerance).max(0.001);
            Decision { allowed: false, remaining: 0, retry_after: wait.ceil() as u64 }
        }
        Err(e) => {
            // Debug: while Postgres is away this would log every request.
            tracing::debug!(error = %e, "rate limit: the shared bucket could not be read; deciding locally");
            return None;
        }
    };
    Some(answer)
}

/// Forgets full buckets (run now and then).
pub async fn purge(ctx: &Ctx) {
    if let Err(e) = crate::db::ratelimits::purge_idle(&ctx.db).await {
        tracing::debug!(error = %e, "rate limit: purge failed");
    }
}
