//! How the queue roles' hot statements run: each one's `EXPLAIN (ANALYZE,
//! BUFFERS, FORMAT JSON)` with sample arguments, for the test that keeps
//! them cheap on large tables that have no statistics. Each statement runs
//! for real: the caller rolls back.

use serde_json::Value;
use sqlx::PgConnection;

use super::{attempts, dispatch, outbox};

/// The statements whose cost must not grow with a backlog, with their names.
pub(crate) async fn explain_hot(conn: &mut PgConnection) -> Result<Vec<(&'static str, Value)>, sqlx::Error> {
    let explain = |sql: &str| sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"));
    let claim = sqlx::query_scalar(explain(dispatch::CLAIM))
        .bind(64_i64)
        .bind(60.0_f64)
        .bind(8_i64)
        .bind(Vec::<String>::new())
        .bind(Vec::<i64>::new())
        .fetch_one(&mut *conn)
        .await?;
    let take = sqlx::query_scalar(explain(outbox::TAKE)).bind(64_i64).fetch_one(&mut *conn).await?;
    let due =
        sqlx::query_scalar(explain(attempts::TAKE_DUE)).bind(3600.0_f64).bind(64_i64).fetch_one(&mut *conn).await?;
    let expired = sqlx::query_scalar(explain(attempts::RELEASE_EXPIRED)).bind(64_i64).fetch_one(&mut *conn).await?;
    Ok(vec![
        ("the dispatcher's claim", claim),
        ("the relay's take", take),
        ("the scheduler's due attempts", due),
        ("the scheduler's expired leases", expired),
    ])
}
