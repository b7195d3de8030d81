//! `/v1/payment_methods` handlers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, Merchant, PathId, QueryMap};
use super::openapi::{CommonErrors, CreatePaymentMethodBody, CustomerFilter, DeletedObject, ListObject, Page};
use crate::service::ApiError;
use crate::service::objects::PaymentMethod;
use crate::service::payment_methods as svc;

/// Stores a provider's token. Card numbers are refused (400).
#[utoipa::path(post, path = "/v1/payment_methods", operation_id = "create_payment_method", tag = "payment_methods", request_body = CreatePaymentMethodBody,
    responses((status = 201, description = "The payment method", body = PaymentMethod,
        links(("retrieve_payment_method" = (operation_id = "retrieve_payment_method", parameters(("id" = "$response.body#/id")))),
            ("delete_payment_method" = (operation_id = "delete_payment_method", parameters(("id" = "$response.body#/id")))))), CommonErrors))]
pub async fn create(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<PaymentMethod>), ApiError> {
    Ok((StatusCode::CREATED, Json(svc::create(&s.ctx, &scope, body).await?)))
}

#[utoipa::path(get, path = "/v1/payment_methods/{id}", operation_id = "retrieve_payment_method", tag = "payment_methods",
    params(("id" = String, Path, description = "pm_…")),
    responses((status = 200, description = "The payment method", body = PaymentMethod), CommonErrors))]
pub async fn retrieve(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<PaymentMethod>, ApiError> {
    svc::retrieve(&s.ctx, &scope, &id).await.map(Json)
}

#[utoipa::path(get, path = "/v1/payment_methods", operation_id = "list_payment_methods", tag = "payment_methods", params(CustomerFilter, Page),
    responses((status = 200, description = "A list of payment methods", body = ListObject), CommonErrors))]
pub async fn list(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    svc::list(&s.ctx, &scope, q).await.map(Json)
}

/// New payments can no longer use it; payments made with it complete.
#[utoipa::path(delete, path = "/v1/payment_methods/{id}", operation_id = "delete_payment_method", tag = "payment_methods",
    params(("id" = String, Path, description = "pm_…")),
    responses((status = 200, description = "Deleted", body = DeletedObject), CommonErrors))]
pub async fn delete(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::delete(&s.ctx, &scope, &id).await.map(Json)
}
