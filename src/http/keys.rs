//! `/v1/api_keys` handlers (contract §11).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, Merchant, PathId};
use super::openapi::{CommonErrors, CreateApiKeyBody, ListObject, RevokedKey};
use crate::service::ApiError;
use crate::service::keys as svc;
use crate::service::objects::ApiKey;

/// Creates a key for the merchant and mode; the answer is the only one that shows `secret`.
#[utoipa::path(post, path = "/v1/api_keys", operation_id = "create_api_key", tag = "keys", request_body = CreateApiKeyBody,
    responses(
        (status = 201, description = "The key, with its secret", body = ApiKey,
            links(("revoke_api_key" = (operation_id = "revoke_api_key", parameters(("id" = "$response.body#/id")))))),
        CommonErrors,
    ))]
pub async fn create(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(svc::create(&s.ctx, &scope, body).await?)))
}

/// The merchant's keys in this mode, without secrets.
#[utoipa::path(get, path = "/v1/api_keys", operation_id = "list_api_keys", tag = "keys",
    responses((status = 200, description = "A list of keys", body = ListObject), CommonErrors))]
pub async fn list(State(s): State<AppState>, Merchant(scope): Merchant) -> Result<Json<Value>, ApiError> {
    svc::list(&s.ctx, &scope).await.map(Json)
}

/// Revokes a key: it answers 401 on every api process within a second.
#[utoipa::path(delete, path = "/v1/api_keys/{id}", operation_id = "revoke_api_key", tag = "keys",
    params(("id" = String, Path, description = "key_…")),
    responses((status = 200, description = "The key is revoked", body = RevokedKey), CommonErrors))]
pub async fn revoke(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::revoke(&s.ctx, &scope, &id).await.map(Json)
}
