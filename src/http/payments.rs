//! `/v1/payments` handlers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::extract::{Keyed, Merchant, PathId, PaymentCreator, PreferWait, QueryMap, Reader};
use super::openapi::{
    CancelBody, CaptureBody, ChargebackBody, ChargebackReversalBody, CommonErrors, CreatePaymentBody, ErrorResponse,
    ListObject, Page, PaymentFilters, RefundBody, SearchQuery, TagsBody, UpdatePaymentBody,
};
use crate::domain::{PaymentId, PaymentStatus, Viewer};
use crate::service::ApiError;
use crate::service::objects::{Payment, Refund, Transaction};
use crate::service::payments::{self, CreatePayment};
use crate::service::{Outcome, details, lifecycle};

/// Creates a payment. With `Prefer: wait=N` the answer waits up to N seconds
/// for the payment to leave `pending`: 201 with the payment, or 402 with the
/// payment in `error.payment` when it failed.
#[utoipa::path(post, path = "/v1/payments", operation_id = "create_payment", tag = "payments",
    request_body = CreatePaymentBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Up to 255 characters; a repeat within 24 h answers the first answer again"),
        ("Prefer" = Option<String>, Header, description = "wait=N (0 to 30 seconds)"),
    ),
    responses(
        (status = 201, description = "The payment (pending, or settled when waited for)", body = Payment,
            links(("retrieve_payment" = (operation_id = "retrieve_payment", parameters(("id" = "$response.body#/id")))),
            ("update_payment" = (operation_id = "update_payment", parameters(("id" = "$response.body#/id")))),
            ("cancel_payment" = (operation_id = "cancel_payment", parameters(("id" = "$response.body#/id")))),
            ("capture_payment" = (operation_id = "capture_payment", parameters(("id" = "$response.body#/id")))),
            ("refund_payment" = (operation_id = "refund_payment", parameters(("id" = "$response.body#/id")))),
            ("record_chargeback" = (operation_id = "record_chargeback", parameters(("id" = "$response.body#/id")))),
            ("add_payment_tags" = (operation_id = "add_payment_tags", parameters(("id" = "$response.body#/id")))),
            ("list_payment_transactions" = (operation_id = "list_payment_transactions", parameters(("id" = "$response.body#/id")))),
            ("list_payment_attempts" = (operation_id = "list_payment_attempts", parameters(("id" = "$response.body#/id")))),
            ("payment_audit_log" = (operation_id = "payment_audit_log", parameters(("id" = "$response.body#/id")))))),
        (status = 402, description = "Prefer: wait and the payment failed", body = ErrorResponse),
        (status = 409, description = "Idempotency-Key reused or in flight; external_key in use", body = ErrorResponse),
        (status = 422, description = "A pending payment exists for this reference; provider not configured", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn create(
    State(s): State<AppState>,
    PaymentCreator(scope): PaymentCreator,
    PreferWait(wait): PreferWait,
    Keyed(key, body): Keyed,
) -> Result<Response, ApiError> {
    let req = CreatePayment::parse(body)?;
    let outcome = payments::create(&s.ctx, &scope, req, key.as_ref()).await?;
    let Some(wait) = wait else { return Ok(outcome.into_response()) };
    let id = outcome.body["id"].as_str().and_then(PaymentId::parse);
    let (Some(id), 201) = (id, outcome.status) else { return Ok(outcome.into_response()) };
    let payment = s.watch.wait(&s.ctx, &Viewer::Merchant(scope), &id, wait).await?;
    let mut resp = if payment.row.status == PaymentStatus::Failed {
        let code = payment.row.error_code;
        let message = payment.row.failure_message.clone().unwrap_or_else(|| "the payment failed".into());
        let body = serde_json::to_value(&payment).map_err(ApiError::internal)?;
        ApiError::payment_failed(code, message, body).into_response()
    } else {
        let body = serde_json::to_value(&payment).map_err(ApiError::internal)?;
        Outcome { status: 201, body }.into_response()
    };
    let applied = HeaderValue::from_str(&format!("wait={}", wait.as_secs())).map_err(ApiError::internal)?;
    resp.headers_mut().insert("preference-applied", applied);
    Ok(resp)
}

#[utoipa::path(get, path = "/v1/payments/{id}", operation_id = "retrieve_payment", tag = "payments",
    params(("id" = String, Path, description = "pay_…")),
    responses((status = 200, description = "The payment", body = Payment), CommonErrors))]
pub async fn retrieve(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let payment = payments::retrieve(&s.ctx, &viewer, &id).await?;
    Ok(Json(serde_json::to_value(payment).map_err(ApiError::internal)?))
}

/// Payments, newest first. Operator keys see every merchant's.
#[utoipa::path(get, path = "/v1/payments", operation_id = "list_payments", tag = "payments", params(Page, PaymentFilters),
    responses((status = 200, description = "A list of payments", body = ListObject), CommonErrors))]
pub async fn list(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    payments::list(&s.ctx, &viewer, q).await.map(Json)
}

/// Payments whose id is `query`, or whose external_key, reference,
/// customer_id or description contain it (case-insensitive).
#[utoipa::path(get, path = "/v1/payments/search", operation_id = "search_payments", tag = "payments", params(SearchQuery, Page),
    responses((status = 200, description = "A list of payments", body = ListObject), CommonErrors))]
pub async fn search(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    payments::search(&s.ctx, &viewer, q).await.map(Json)
}

/// Updates metadata (merged; `null` removes a key) and description.
#[utoipa::path(post, path = "/v1/payments/{id}", operation_id = "update_payment", tag = "payments", request_body = UpdatePaymentBody,
    params(("id" = String, Path, description = "pay_…")),
    responses((status = 200, description = "The payment", body = Payment), CommonErrors))]
pub async fn update(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    details::update(&s.ctx, &scope, &id, body, key.as_ref()).await
}

/// Cancels a pending payment (no provider call afterwards) or voids an
/// authorized one.
#[utoipa::path(post, path = "/v1/payments/{id}/cancel", operation_id = "cancel_payment", tag = "payments", request_body = CancelBody,
    params(("id" = String, Path, description = "pay_…")),
    responses(
        (status = 200, description = "The payment, canceled", body = Payment),
        (status = 409, description = "Already canceled", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    lifecycle::cancel(&s.ctx, &scope, &id, body, key.as_ref()).await
}

/// Captures (part of) an authorized payment; several captures may follow
/// one another, never more than authorized.
#[utoipa::path(post, path = "/v1/payments/{id}/capture", operation_id = "capture_payment", tag = "payments", request_body = CaptureBody,
    params(("id" = String, Path, description = "pay_…")),
    responses((status = 200, description = "The payment, with the capture pending", body = Payment), CommonErrors))]
pub async fn capture(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    lifecycle::capture(&s.ctx, &scope, &id, body, key.as_ref()).await
}

#[utoipa::path(post, path = "/v1/payments/{id}/refund", operation_id = "refund_payment", tag = "payments", request_body = RefundBody,
    params(("id" = String, Path, description = "pay_…")),
    responses(
        (status = 200, description = "The refund, pending or succeeded", body = Refund),
        (status = 409, description = "Already fully refunded", body = ErrorResponse),
        (status = 422, description = "More than what is left to refund", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn refund(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    lifecycle::refund(&s.ctx, &scope, &id, body, key.as_ref()).await
}

/// Records a chargeback (no provider call). It counts toward
/// `amount_refunded` and leaves the payment `refunded`.
#[utoipa::path(post, path = "/v1/payments/{id}/chargebacks", operation_id = "record_chargeback", tag = "payments", request_body = ChargebackBody,
    params(("id" = String, Path, description = "pay_…")),
    responses(
        (status = 200, description = "The chargeback transaction", body = Transaction),
        (status = 409, description = "Nothing left to charge back", body = ErrorResponse),
        (status = 422, description = "More than what is left", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn chargeback(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    lifecycle::chargeback(&s.ctx, &scope, &id, body, key.as_ref()).await
}

/// Reverses a chargeback: its amount is no longer refunded.
#[utoipa::path(post, path = "/v1/payments/{id}/chargeback_reversals", operation_id = "reverse_chargeback", tag = "payments",
    request_body = ChargebackReversalBody,
    params(("id" = String, Path, description = "pay_…")),
    responses(
        (status = 200, description = "The chargeback_reversal transaction", body = Transaction),
        (status = 409, description = "Already reversed", body = ErrorResponse),
        CommonErrors,
    ))]
pub async fn reverse_chargeback(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    lifecycle::reverse_chargeback(&s.ctx, &scope, &id, body, key.as_ref()).await
}

#[utoipa::path(post, path = "/v1/payments/{id}/tags", operation_id = "add_payment_tags", tag = "payments", request_body = TagsBody,
    params(("id" = String, Path, description = "pay_…")),
    responses((status = 200, description = "The payment", body = Payment), CommonErrors))]
pub async fn add_tags(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    PathId(id): PathId,
    Keyed(key, body): Keyed,
) -> Result<Outcome, ApiError> {
    details::add_tags(&s.ctx, &scope, &id, body, key.as_ref()).await
}

#[utoipa::path(delete, path = "/v1/payments/{id}/tags/{tag}", operation_id = "remove_payment_tag", tag = "payments",
    params(("id" = String, Path, description = "pay_…"), ("tag" = String, Path)),
    responses((status = 200, description = "The payment", body = Payment), CommonErrors))]
pub async fn remove_tag(
    State(s): State<AppState>,
    Merchant(scope): Merchant,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Outcome, ApiError> {
    let Path((id, tag)) = path.map_err(|_| ApiError::not_found("payment"))?;
    if let Some(field) = [("id", &id), ("tag", &tag)].into_iter().find_map(|(f, v)| v.contains('\0').then_some(f)) {
        return Err(ApiError::nul(field));
    }
    details::remove_tag(&s.ctx, &scope, &id, &tag).await
}

/// The payment's transactions, newest first.
#[utoipa::path(get, path = "/v1/payments/{id}/transactions", operation_id = "list_payment_transactions", tag = "payments",
    params(("id" = String, Path, description = "pay_…"), Page),
    responses((status = 200, description = "A list of transactions", body = ListObject), CommonErrors))]
pub async fn transactions(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    details::transactions(&s.ctx, &viewer, &id, q).await.map(Json)
}

/// Every change of the payment with its actor (a key id or `system`), oldest first.
#[utoipa::path(get, path = "/v1/payments/{id}/audit_log", operation_id = "payment_audit_log", tag = "payments",
    params(("id" = String, Path, description = "pay_…"), Page),
    responses((status = 200, description = "A list of audit log entries", body = ListObject), CommonErrors))]
pub async fn audit_log(
    State(s): State<AppState>,
    Reader(viewer, _): Reader,
    PathId(id): PathId,
    QueryMap(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    details::audit_log(&s.ctx, &viewer, &id, q).await.map(Json)
}
