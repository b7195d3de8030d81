//! `/v1/attempts` and `/v1/payments/{id}/attempts` handlers.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::AppState;
use super::extract::{AttemptViewer, JsonBody, Merchant, PathId, QueryMap};
use crate::error::ApiError;
use crate::service::attempts as svc;

pub async fn list(State(s): State<AppState>, AttemptViewer(viewer): AttemptViewer, QueryMap(q): QueryMap) -> Result<Json<Value>, ApiError> {
    svc::list(&s.ctx, &viewer, q).await.map(Json)
}

pub async fn of_payment(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::of_payment(&s.ctx, &scope, &id, q).await.map(Json)
}

pub async fn cancel(
    State(s): State<AppState>,
    AttemptViewer(viewer): AttemptViewer,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    svc::cancel(&s.ctx, &viewer, &id, body).await.map(Json)
}
