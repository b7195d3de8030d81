//! `/v1/webhook_endpoints` and `/v1/events` handlers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::extract::{PathId, JsonBody, Merchant, QueryMap};
use crate::error::ApiError;
use crate::service::webhooks as svc;

pub async fn create(State(s): State<AppState>, Merchant(scope): Merchant, JsonBody(body): JsonBody) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(svc::create_endpoint(&s.ctx, &scope, body).await?)))
}

pub async fn list(State(s): State<AppState>, Merchant(scope): Merchant, QueryMap(q): QueryMap) -> Result<Json<Value>, ApiError> {
    svc::list_endpoints(&s.ctx, &scope, q).await.map(Json)
}

pub async fn retrieve(State(s): State<AppState>, Merchant(scope): Merchant, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    svc::retrieve_endpoint(&s.ctx, &scope, &id).await.map(Json)
}

pub async fn delete(State(s): State<AppState>, Merchant(scope): Merchant, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    svc::delete_endpoint(&s.ctx, &scope, &id).await.map(Json)
}

pub async fn deliveries(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::list_deliveries(&s.ctx, &scope, &id, q).await.map(Json)
}

pub async fn list_events(State(s): State<AppState>, Merchant(scope): Merchant, QueryMap(q): QueryMap) -> Result<Json<Value>, ApiError> {
    svc::list_events(&s.ctx, &scope, q).await.map(Json)
}

pub async fn retrieve_event(State(s): State<AppState>, Merchant(scope): Merchant, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    svc::retrieve_event(&s.ctx, &scope, &id).await.map(Json)
}

pub async fn update(State(s): State<AppState>, Merchant(scope): Merchant, PathId(id): PathId, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    svc::update_endpoint(&s.ctx, &scope, &id, body).await.map(Json)
}

pub async fn rotate_secret(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    svc::rotate_secret(&s.ctx, &scope, &id, body).await.map(Json)
}

pub async fn retry_delivery(State(s): State<AppState>, Merchant(scope): Merchant, PathId(id): PathId) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(svc::retry_delivery(&s.ctx, &scope, &id).await?)))
}
