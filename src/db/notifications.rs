//! Provider notifications already applied, by the provider's id for them,
//! so a notification sent twice is applied once.

use sqlx::PgConnection;

/// Records that notification `id` of `provider` is being applied, in the
/// transaction that applies it; false when it was applied before.
pub async fn record_once(conn: &mut PgConnection, provider: &str, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("INSERT INTO provider_notifications (provider, id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(provider)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
