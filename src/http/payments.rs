//! `/v1/payments` handlers.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::AppState;
use super::extract::{PathId, IdempotencyHeader, JsonBody, Merchant, PaymentCreator, QueryMap};
use crate::error::ApiError;
use crate::service::payments::{self, CreatePayment};
use crate::service::{IdempotencyKey, Outcome};

fn key(header: IdempotencyHeader, operation: &str, body: &Value) -> Result<Option<IdempotencyKey>, ApiError> {
    header.0.map(|k| IdempotencyKey::new(&k, operation, body)).transpose()
}

pub async fn create(
    State(s): State<AppState>,
    PaymentCreator(scope): PaymentCreator,
    idem: IdempotencyHeader,
    JsonBody(body): JsonBody,
) -> Result<Outcome, ApiError> {
    let key = key(idem, "POST /v1/payments", &body)?;
    let req = CreatePayment::parse(body)?;
    payments::create(&s.ctx, &scope, req, key.as_ref()).await
}

pub async fn retrieve(State(s): State<AppState>, Merchant(scope): Merchant, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    let payment = payments::retrieve(&s.ctx, &scope, &id).await?;
    Ok(Json(serde_json::to_value(payment).map_err(ApiError::internal)?))
}

pub async fn list(State(s): State<AppState>, Merchant(scope): Merchant, QueryMap(q): QueryMap) -> Result<Json<Value>, ApiError> {
    payments::list(&s.ctx, &scope, q).await.map(Json)
}

pub async fn cancel(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    idem: IdempotencyHeader,
    JsonBody(body): JsonBody,
) -> Result<Outcome, ApiError> {
    let key = key(idem, &format!("POST /v1/payments/{id}/cancel"), &body)?;
    payments::cancel(&s.ctx, &scope, &id, body, key.as_ref()).await
}

pub async fn refund(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    idem: IdempotencyHeader,
    JsonBody(body): JsonBody,
) -> Result<Outcome, ApiError> {
    let key = key(idem, &format!("POST /v1/payments/{id}/refund"), &body)?;
    payments::refund(&s.ctx, &scope, &id, body, key.as_ref()).await
}
