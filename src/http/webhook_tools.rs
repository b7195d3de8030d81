//! Webhook tooling handlers (contract §13).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, Merchant, PathId, QueryMap};
use super::openapi::{CommonErrors, EndpointStats, ListObject, Page, RecoverBody, TestSendBody, TestSendResult};
use crate::service::objects::{Payment, Recovery};
use crate::service::{ApiError, webhook_tools as svc};

/// Each send of a delivery, with the receiver's answer; newest first.
#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}/attempts", operation_id = "list_delivery_attempts", tag = "webhooks",
    params(("id" = String, Path, description = "whd_…"), Page),
    responses((status = 200, description = "A list of webhook attempts", body = ListObject), CommonErrors))]
pub async fn attempts(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    QueryMap(query): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::attempts(&s.ctx, &scope, &id, query).await.map(Json)
}

/// The endpoint's deliveries of the last 24 hours by status, commit-to-2xx latency and backlog age.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/stats", operation_id = "webhook_endpoint_stats", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, description = "The endpoint's stats", body = EndpointStats), CommonErrors))]
pub async fn stats(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::stats(&s.ctx, &scope, &id).await.map(Json)
}

/// Sends a signed example event (`"test": true`) to the endpoint at once.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/test", operation_id = "test_webhook_endpoint", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")), request_body = TestSendBody,
    responses((status = 200, description = "How the endpoint answered", body = TestSendResult), CommonErrors))]
pub async fn test_send(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    svc::test_send(&s.ctx, &scope, &id, body).await.map(Json)
}

/// Test mode: makes the payment's next scheduled attempt due now.
#[utoipa::path(post, path = "/v1/test_helpers/payments/{id}/advance", operation_id = "advance_test_payment", tag = "payments",
    params(("id" = String, Path, description = "pay_…")),
    responses((status = 200, description = "The payment", body = Payment), CommonErrors))]
pub async fn advance(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::advance(&s.ctx, &scope, &id).await.map(Json)
}

/// Sends again every failed delivery of the endpoint created in the window, and with `include_missed` the events it missed while disabled.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/recover", operation_id = "recover_webhook_endpoint", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")), request_body = RecoverBody,
    responses(
        (status = 202, description = "The recovery, running", body = Recovery,
            links(("retrieve_recovery" = (operation_id = "retrieve_recovery", parameters(("id" = "$response.body#/id")))))),
        (status = 409, description = "A recovery of this endpoint is running", body = super::openapi::ErrorResponse),
        CommonErrors,
    ))]
pub async fn recover(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(svc::recover(&s.ctx, &scope, &id, body).await?)))
}

/// A recovery: `running` until everything it re-queues is queued, then `completed`.
#[utoipa::path(get, path = "/v1/recoveries/{id}", operation_id = "retrieve_recovery", tag = "webhooks",
    params(("id" = String, Path, description = "rcv_…")),
    responses((status = 200, description = "The recovery", body = Recovery), CommonErrors))]
pub async fn retrieve_recovery(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::retrieve_recovery(&s.ctx, &scope, &id).await.map(Json)
}
