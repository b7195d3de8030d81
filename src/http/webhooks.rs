//! `/v1/webhook_endpoints` and `/v1/events` handlers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, Merchant, PathId, QueryMap};
use super::openapi::{
    CommonErrors, CreateEndpointBody, DeletedObject, ErrorResponse, EventFilters, ListObject, Page, RotateSecretBody,
    StatusFilter, UpdateEndpointBody,
};
use crate::service::ApiError;
use crate::service::objects::{Delivery, Endpoint, Event};
use crate::service::webhooks as svc;

/// Registers an endpoint; the answer is the only one (besides rotation) that shows `secret`.
#[utoipa::path(post, path = "/v1/webhook_endpoints", operation_id = "create_webhook_endpoint", tag = "webhooks", request_body = CreateEndpointBody,
    responses(
        (status = 201, description = "The endpoint, with its secret", body = Endpoint,
            links(("retrieve_webhook_endpoint" = (operation_id = "retrieve_webhook_endpoint", parameters(("id" = "$response.body#/id")))),
            ("update_webhook_endpoint" = (operation_id = "update_webhook_endpoint", parameters(("id" = "$response.body#/id")))),
            ("delete_webhook_endpoint" = (operation_id = "delete_webhook_endpoint", parameters(("id" = "$response.body#/id")))),
            ("rotate_secret" = (operation_id = "rotate_secret", parameters(("id" = "$response.body#/id")))),
            ("list_webhook_deliveries" = (operation_id = "list_webhook_deliveries", parameters(("id" = "$response.body#/id")))))),
        (status = 422, description = "URL not allowed", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn create(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(svc::create_endpoint(&s.ctx, &scope, body).await?)))
}

#[utoipa::path(get, path = "/v1/webhook_endpoints", operation_id = "list_webhook_endpoints", tag = "webhooks", params(Page),
    responses((status = 200, description = "A list of endpoints", body = ListObject), CommonErrors))]
pub async fn list(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::list_endpoints(&s.ctx, &scope, q).await.map(Json)
}

#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", operation_id = "retrieve_webhook_endpoint", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, description = "The endpoint", body = Endpoint), CommonErrors))]
pub async fn retrieve(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::retrieve_endpoint(&s.ctx, &scope, &id).await.map(Json)
}

#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", operation_id = "delete_webhook_endpoint", tag = "webhooks",
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, description = "Deleted", body = DeletedObject), CommonErrors))]
pub async fn delete(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::delete_endpoint(&s.ctx, &scope, &id).await.map(Json)
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "we_…"), StatusFilter, Page),
    responses((status = 200, description = "A list of deliveries", body = ListObject), CommonErrors))]
pub async fn deliveries(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::list_deliveries(&s.ctx, &scope, &id, q).await.map(Json)
}

#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "webhooks", params(EventFilters, Page),
    responses((status = 200, description = "A list of events", body = ListObject), CommonErrors))]
pub async fn list_events(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::list_events(&s.ctx, &scope, q).await.map(Json)
}

#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "retrieve_event", tag = "webhooks",
    params(("id" = String, Path, description = "evt_…")),
    responses((status = 200, description = "The event", body = Event), CommonErrors))]
pub async fn retrieve_event(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::retrieve_event(&s.ctx, &scope, &id).await.map(Json)
}

/// Replaces the event's data with `{}` for good; deliveries not yet sent carry the expunged data.
#[utoipa::path(post, path = "/v1/events/{id}/expunge", operation_id = "expunge_event", tag = "webhooks",
    params(("id" = String, Path, description = "evt_…")),
    responses((status = 200, description = "The event, expunged", body = Event), CommonErrors))]
pub async fn expunge_event(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::expunge_event(&s.ctx, &scope, &id).await.map(Json)
}

#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}", operation_id = "update_webhook_endpoint", tag = "webhooks", request_body = UpdateEndpointBody,
    params(("id" = String, Path, description = "we_…")),
    responses(
        (status = 200, description = "The endpoint", body = Endpoint),
        (status = 422, description = "URL not allowed", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn update(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    svc::update_endpoint(&s.ctx, &scope, &id, body).await.map(Json)
}

/// A new secret; the previous one keeps signing (second signature) for `expire_previous_in` seconds.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/rotate_secret", operation_id = "rotate_secret", tag = "webhooks", request_body = RotateSecretBody,
    params(("id" = String, Path, description = "we_…")),
    responses((status = 200, description = "The endpoint with its new secret", body = Endpoint), CommonErrors))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    svc::rotate_secret(&s.ctx, &scope, &id, body).await.map(Json)
}

/// Sends the delivery again now.
#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/retry", operation_id = "retry_delivery", tag = "webhooks",
    params(("id" = String, Path, description = "whd_…")),
    responses((status = 202, description = "Queued for sending now", body = Delivery), CommonErrors))]
pub async fn retry_delivery(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(svc::retry_delivery(&s.ctx, &scope, &id).await?)))
}
