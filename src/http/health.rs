//! `/health/live` and `/health/ready`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// The process is up.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Postgres and RabbitMQ answer; 503 otherwise, naming which does not.
pub async fn ready(State(s): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = tokio::time::timeout(Duration::from_secs(2), s.ctx.database_answers()).await.is_ok_and(|ok| ok);
    let amqp = tokio::time::timeout(Duration::from_secs(2), s.amqp.check()).await.is_ok_and(|ok| ok);
    let status = if db && amqp { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (status, Json(json!({"status": word(db && amqp), "postgres": word(db), "rabbitmq": word(amqp)})))
}
