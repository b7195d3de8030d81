//! The operator toolkit's handlers (contract §14): scheduled attempts run
//! now, rescheduled or canceled in bulk; holds; stuck transactions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, PathId, QueryMap, Reader};
use super::openapi::{
    BulkCancelBody, BulkCancelResult, CommonErrors, CreateHoldBody, ErrorResponse, ListObject, OffsetPage,
    ReleaseHoldBody, RescheduleBody, ResolveBody, RetryNowBody, StatusFilter,
};
use crate::service::objects::{Attempt, Hold, Transaction};
use crate::service::{ApiError, holds, resolve, toolkit};

/// Runs a scheduled attempt now: its work message is queued at once.
#[utoipa::path(post, path = "/v1/attempts/{id}/retry_now", operation_id = "retry_attempt_now", tag = "attempts",
    request_body = RetryNowBody, params(("id" = String, Path, description = "att_…")),
    responses(
        (status = 200, description = "The attempt, due now", body = Attempt),
        (status = 409, description = "The attempt is not scheduled", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn retry_now(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    toolkit::retry_now(&s.ctx, &viewer, &actor, &id, body).await.map(Json)
}

/// Moves a scheduled attempt to another time.
#[utoipa::path(post, path = "/v1/attempts/{id}/reschedule", operation_id = "reschedule_attempt", tag = "attempts",
    request_body = RescheduleBody, params(("id" = String, Path, description = "att_…")),
    responses(
        (status = 200, description = "The attempt, due at `at`", body = Attempt),
        (status = 409, description = "The attempt is not scheduled", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn reschedule(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    toolkit::reschedule(&s.ctx, &viewer, &actor, &id, body).await.map(Json)
}

/// Cancels every matching scheduled attempt (as the single cancel does to
/// each); operators for any merchant, a merchant key for its own.
#[utoipa::path(post, path = "/v1/attempts/bulk_cancel", operation_id = "bulk_cancel_attempts", tag = "attempts",
    request_body = BulkCancelBody,
    responses((status = 200, description = "How many matched and were canceled", body = BulkCancelResult), CommonErrors))]
pub async fn bulk_cancel(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    toolkit::bulk_cancel(&s.ctx, &viewer, &actor, body).await.map(Json)
}

/// Parks matching scheduled attempts, and every matching one that comes
/// due while it is active (operator keys; merchants 403).
#[utoipa::path(post, path = "/v1/holds", operation_id = "create_hold", tag = "holds", request_body = CreateHoldBody,
    responses((status = 201, description = "The hold, active, with `matched`", body = Hold), CommonErrors))]
pub async fn create_hold(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    holds::create(&s.ctx, &viewer, &actor, body).await.map(|v| (StatusCode::CREATED, Json(v)))
}

/// Holds, newest first (operator keys).
#[utoipa::path(get, path = "/v1/holds", operation_id = "list_holds", tag = "holds", params(StatusFilter, OffsetPage),
    responses((status = 200, description = "A list of holds", body = ListObject), CommonErrors))]
pub async fn list_holds(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    holds::list(&s.ctx, &viewer, q).await.map(Json)
}

/// Ends a hold: its attempts are scheduled again, spread over `over`.
#[utoipa::path(post, path = "/v1/holds/{id}/release", operation_id = "release_hold", tag = "holds",
    request_body = ReleaseHoldBody, params(("id" = String, Path, description = "hold_…")),
    responses((status = 200, description = "The hold, released", body = Hold), CommonErrors))]
pub async fn release_hold(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    holds::release(&s.ctx, &viewer, &actor, &id, body).await.map(Json)
}

/// Transactions whose outcome stayed unknown, the longest stuck first
/// (operator keys; merchants 403).
#[utoipa::path(get, path = "/v1/transactions", operation_id = "list_stuck_transactions", tag = "transactions",
    params(StatusFilter, OffsetPage),
    responses((status = 200, description = "A list of transactions", body = ListObject), CommonErrors))]
pub async fn list_transactions(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    resolve::list(&s.ctx, &viewer, q).await.map(Json)
}

/// Settles an unknown transaction and its payment by the operator's word
/// (operator keys; merchants 403).
#[utoipa::path(post, path = "/v1/transactions/{id}/resolve", operation_id = "resolve_transaction", tag = "transactions",
    request_body = ResolveBody, params(("id" = String, Path, description = "txn_…")),
    responses(
        (status = 200, description = "The transaction, settled", body = Transaction),
        (status = 409, description = "The transaction's outcome is not unknown", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn resolve_transaction(
    State(s): State<AppState>,
    Reader(viewer, actor): Reader,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    resolve::resolve(&s.ctx, &viewer, &actor, &id, body).await.map(Json)
}
