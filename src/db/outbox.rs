//! The outbox: messages written in the transaction of the state they
//! announce, published by the relay, then deleted.

use serde_json::Value;
use sqlx::PgConnection;

/// The `queue` of the outbox rows that the `events` table's trigger writes
/// for each event when the session has `payd.publish_events` on (see
/// [`super::PUBLISH_EVENTS`]): `{"event_id"}`, published to the events
/// exchange, not to a queue. No queue of payd's has this name.
pub const EVENTS: &str = "@events";

/// One message waiting to be published.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    /// The queue's name without the prefix.
    pub queue: String,
    pub payload: Value,
}

/// Adds a message; it is published only if the transaction commits. The
/// caller rings [`super::notify::OUTBOX`] after the commit.
pub async fn enqueue(conn: &mut PgConnection, queue: &str, payload: &Value) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (queue, payload) VALUES ($1, $2)")
        .bind(queue)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes up to `limit` messages, oldest first, locked so concurrent relays
/// take different ones.
pub async fn take(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(TAKE).bind(limit).fetch_all(conn).await
}

/// [`take`]'s statement.
pub(crate) const TAKE: &str = "SELECT id, queue, payload FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED";

/// Removes published messages.
pub async fn remove(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(conn).await?;
    Ok(())
}

/// The outbox's backlog across the deployment: rows not yet published, and
/// the age of the oldest in seconds (gauges).
pub async fn backlog(pool: &sqlx::PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as("SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox")
        .fetch_one(pool)
        .await
}
