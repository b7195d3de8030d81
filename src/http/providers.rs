//! `/v1/provider_accounts` handlers and Stripe's webhooks (contract §12).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::AppState;
use super::extract::{JsonBody, Merchant, PathId};
use super::openapi::{CommonErrors, CreateProviderAccountBody, DeletedObject, ErrorResponse, ListObject};
use crate::service::objects::ProviderAccount;
use crate::service::{ApiError, provider_accounts as svc};

/// Connects the merchant's account at a provider (Stripe) in this mode; its credentials are never shown again.
#[utoipa::path(post, path = "/v1/provider_accounts", operation_id = "create_provider_account", tag = "providers",
    request_body = CreateProviderAccountBody,
    responses(
        (status = 201, description = "The account", body = ProviderAccount,
            links(("delete_provider_account" = (operation_id = "delete_provider_account", parameters(("id" = "$response.body#/id")))))),
        CommonErrors,
    ))]
pub async fn create(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ProviderAccount>), ApiError> {
    Ok((StatusCode::CREATED, Json(svc::create(&s.ctx, &scope, body).await?)))
}

/// The merchant's provider accounts in this mode.
#[utoipa::path(get, path = "/v1/provider_accounts", operation_id = "list_provider_accounts", tag = "providers",
    responses((status = 200, description = "A list of provider accounts", body = ListObject), CommonErrors))]
pub async fn list(State(s): State<AppState>, Merchant(scope): Merchant) -> Result<Json<Value>, ApiError> {
    svc::list(&s.ctx, &scope).await.map(Json)
}

#[utoipa::path(get, path = "/v1/provider_accounts/{id}", operation_id = "retrieve_provider_account", tag = "providers",
    params(("id" = String, Path, description = "pa_…")),
    responses((status = 200, description = "The account", body = ProviderAccount), CommonErrors))]
pub async fn retrieve(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<ProviderAccount>, ApiError> {
    svc::retrieve(&s.ctx, &scope, &id).await.map(Json)
}

/// Disconnects the account: its credentials are wiped.
#[utoipa::path(delete, path = "/v1/provider_accounts/{id}", operation_id = "delete_provider_account", tag = "providers",
    params(("id" = String, Path, description = "pa_…")),
    responses((status = 200, description = "Deleted", body = DeletedObject), CommonErrors))]
pub async fn delete(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    svc::delete(&s.ctx, &scope, &id).await.map(Json)
}

/// Stripe's webhook for a connected account: no API key; `Stripe-Signature`
/// with the account's `webhook_secret` is the proof.
#[utoipa::path(post, path = "/v1/provider_notifications/stripe/{provider_account_id}", operation_id = "receive_stripe_event",
    tag = "providers", security(()),
    params(("provider_account_id" = String, Path, description = "pa_…")),
    responses(
        (status = 200, description = "Applied, a duplicate, or ignored"),
        (status = 400, description = "Bad signature or event", body = ErrorResponse),
        (status = 404, description = "Unknown provider account", body = ErrorResponse),
    ))]
pub async fn stripe_event(
    State(s): State<AppState>,
    PathId(account): PathId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let signature = headers.get(crate::provider::stripe::events::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    crate::service::stripe_events::receive(&s.ctx, &account, signature, &body).await.map(Json)
}
