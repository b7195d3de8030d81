//! Rate-limit buckets shared by every api process (contract §11: a key gets
//! `rate_limit.per_minute` from the whole deployment, not from each
//! process). GCRA in one statement: a bucket is its theoretical arrival
//! time; a request is let through when advancing it by one emission
//! interval stays within the burst. The table is UNLOGGED: a bucket lost in
//! a crash only means a fresh burst.

use sqlx::PgPool;

/// Advances `bucket` by `interval` seconds unless that passes `now +
/// tolerance`; answers how far ahead of now the bucket is afterwards
/// (`Ok(Some)`, let through) or, when refused, `Ok(None)`.
pub async fn take(pool: &PgPool, bucket: &[u8], interval: f64, tolerance: f64) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO rate_limits AS r (bucket, tat) VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (bucket) DO UPDATE SET tat = greatest(r.tat, now()) + make_interval(secs => $2)
             WHERE greatest(r.tat, now()) + make_interval(secs => $2) <= now() + make_interval(secs => $3)
         RETURNING extract(epoch FROM tat - now())::float8",
    )
    .bind(bucket)
    .bind(interval)
    .bind(tolerance)
    .fetch_optional(pool)
    .await
}

/// How far ahead of now a bucket is (0 when unknown or behind).
pub async fn ahead(pool: &PgPool, bucket: &[u8]) -> Result<f64, sqlx::Error> {
    let ahead: Option<f64> = sqlx::query_scalar(
        "SELECT greatest(extract(epoch FROM tat - now())::float8, 0) FROM rate_limits WHERE bucket = $1",
    )
    .bind(bucket)
    .fetch_optional(pool)
    .await?;
    Ok(ahead.unwrap_or(0.0))
}

/// Forgets buckets that are behind now (full again): they hold nothing.
pub async fn purge_idle(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM rate_limits WHERE tat < now()").execute(pool).await?.rows_affected())
}
