//! `/v1/attempts` and `/v1/payments/{id}/attempts` handlers.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, PathId, QueryMap, Reader};
use super::openapi::{AttemptCancelBody, AttemptFilters, CommonErrors, ErrorResponse, ListObject, Page};
use crate::service::ApiError;
use crate::service::attempts as svc;
use crate::service::objects::Attempt;

/// Attempts, newest first: an operator key sees every merchant's.
#[utoipa::path(get, path = "/v1/attempts", operation_id = "list_attempts", tag = "attempts", params(AttemptFilters, Page),
    responses((status = 200, description = "A list of attempts", body = ListObject), CommonErrors))]
pub async fn list(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::list(&s.ctx, &viewer, q).await.map(Json)
}

/// The provider calls of one payment, newest first.
#[utoipa::path(get, path = "/v1/payments/{id}/attempts", operation_id = "list_payment_attempts", tag = "payments",
    params(("id" = String, Path, description = "pay_…"), Page),
    responses((status = 200, description = "A list of attempts", body = ListObject), CommonErrors))]
pub async fn of_payment(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::of_payment(&s.ctx, &viewer, &id, q).await.map(Json)
}

/// Cancels a scheduled retry: it never runs, and its payment fails with
/// `retry_canceled`.
#[utoipa::path(post, path = "/v1/attempts/{id}/cancel", operation_id = "cancel_attempt", tag = "attempts", request_body = AttemptCancelBody,
    params(("id" = String, Path, description = "att_…")),
    responses(
        (status = 200, description = "The attempt, canceled", body = Attempt),
        (status = 409, description = "The attempt is not scheduled", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    svc::cancel(&s.ctx, &viewer, &actor, &id, body).await.map(Json)
}
