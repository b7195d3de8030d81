//! Retention (contract §13): old rows go in small batches, each its own
//! short statement, so a purge never holds locks that deliveries wait on.

use std::time::Duration;

use sqlx::PgPool;

/// Deletes at most `batch` delivery-attempt log rows older than `age`;
/// answers how many.
pub async fn purge_attempts(pool: &PgPool, age: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM webhook_delivery_attempts WHERE id IN (
             SELECT id FROM webhook_delivery_attempts WHERE attempted_at < now() - make_interval(secs => $1)
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(age.as_secs_f64())
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes at most `batch` events older than `age` none of whose
/// deliveries is pending, with their deliveries (and, by cascade, their
/// attempts); answers how many events.
pub async fn purge_events(pool: &PgPool, age: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "WITH old AS (
             SELECT e.id FROM events e
             WHERE e.created_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
             ORDER BY e.created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
         gone AS (DELETE FROM webhook_deliveries d USING old WHERE d.event_id = old.id)
         DELETE FROM events e USING old WHERE e.id = old.id",
    )
    .bind(age.as_secs_f64())
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
