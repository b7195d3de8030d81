//! The console (contract §14) at `/console`: server-rendered HTML served by
//! payd itself. No external assets and no build step: the markup comes
//! from `maud` (escaped by construction), the style and a few lines of
//! script are inline and allowed by hash in the Content-Security-Policy.
//!
//! It is an entry point of its own over the same use cases as the API:
//! a signed-in session holds the key it was opened with, and every page
//! calls the service with that key's viewer or scope, so a merchant sees
//! only its own objects and an operator what an operator key may. These
//! routes are HTML, not API: they are not in the OpenAPI document.

mod csrf;
mod endpoints;
mod layout;
mod operator;
mod payments;
mod session;
mod toolkit;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::AppState;
use super::extract::QueryMap;
use crate::service::ApiError;

/// The console's routes (merged into the whole router, outside `/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(session::home))
        .route("/console/sign_in", get(session::form).post(session::sign_in))
        .route("/console/sign_out", post(session::sign_out))
        .route("/console/attempts", get(operator::attempts))
        .route("/console/attempts/cancel", get(operator::confirm_cancel).post(operator::cancel))
        .route("/console/payments", get(payments::list))
        .route("/console/payments/{id}", get(payments::timeline))
        .route("/console/endpoints", get(endpoints::list))
        .route("/console/endpoints/{id}", get(endpoints::detail))
        .route("/console/endpoints/{id}/recover", get(endpoints::confirm_recover).post(endpoints::recover))
        .route("/console/endpoints/{id}/test", post(endpoints::test_send))
        .route("/console/deliveries/{id}", get(endpoints::delivery))
        .route("/console/deliveries/{id}/retry", post(endpoints::retry))
        .route("/console/attempts/bulk_cancel", get(toolkit::bulk_form).post(toolkit::bulk_cancel))
        .route("/console/attempts/{id}/retry_now", post(toolkit::retry_now))
        .route("/console/attempts/{id}/reschedule", post(toolkit::reschedule))
        .route("/console/holds", get(toolkit::holds).post(toolkit::create_hold))
        .route("/console/holds/{id}/release", post(toolkit::release_hold))
        .route("/console/transactions", get(toolkit::unknown_transactions))
        .route("/console/transactions/{id}/resolve", post(toolkit::resolve))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Headers of every console answer: only the console's own resources and
/// inline code (CSP), never framed (clickjacking), no Referer leaking ids
/// to links, no caching of pages that show private data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&layout::CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A page with a status.
fn page_response(status: u16, markup: Markup) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// Why a console request did not get its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: to the sign-in page.
    SignIn,
    /// What a use case refused, with the API's status and message.
    Api(ApiError),
}

impl ConsoleError {
    /// A refusal with a status and a message.
    fn status(status: u16, message: impl Into<String>) -> Self {
        let code = match status {
            403 => crate::service::ErrorCode::PermissionDenied,
            413 => crate::service::ErrorCode::BodyTooLarge,
            _ => crate::service::ErrorCode::BodyInvalid,
        };
        Self::Api(ApiError::new(status, code, message))
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/console/sign_in").into_response(),
            Self::Api(e) => {
                if e.status >= 500 {
                    tracing::error!(error = ?e.source, message = %e.message, "console: request failed");
                }
                let body = html! {
                    p.error id="error" { (e.message) }
                    p { a href="/console" { "Back to the console" } }
                };
                page_response(e.status, layout::page(&format!("Error {}", e.status), None, body))
            }
        }
    }
}

/// A console page's answer.
type Page = Result<Response, ConsoleError>;

/// A page as a 200 answer.
fn ok(markup: Markup) -> Page {
    Ok(page_response(200, markup))
}

/// The query parameters of a console page, as the API's parser reads them
/// (a malformed query is a 400 page).
pub struct ConsoleQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ConsoleQuery {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        let QueryMap(q) = QueryMap::from_request_parts(parts, state).await?;
        Ok(Self(q))
    }
}

/// Rows a console list shows when the page does not say.
const DEFAULT_LIMIT: i64 = 25;

impl ConsoleQuery {
    /// The value of `name`, "" when absent.
    fn value(&self, name: &str) -> String {
        self.0.get(name).map(|v| v.trim().to_owned()).unwrap_or_default()
    }

    /// The named, non-blank parameters for a use case's query (empty form
    /// fields mean "any"), with the page's limit and offset.
    fn pick(&self, names: &[&str]) -> (HashMap<String, String>, i64, i64) {
        let mut q: HashMap<String, String> =
            names.iter().map(|n| ((*n).to_owned(), self.value(n))).filter(|(_, v)| !v.is_empty()).collect();
        // Out of range values are left for the use case to refuse (its bounds are the API's).
        let limit = self.value("limit").parse().unwrap_or(DEFAULT_LIMIT);
        let offset = self.value("offset").parse().unwrap_or(0);
        q.insert("limit".into(), limit.to_string());
        q.insert("offset".into(), offset.to_string());
        (q, limit, offset)
    }
}

/// The `{id}` of a console route (through the API's own check).
pub struct ConsolePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ConsolePath {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        let super::extract::PathId(id) = super::extract::PathId::from_request_parts(parts, state).await?;
        Ok(Self(id))
    }
}

/// A use case's query of fixed parameters.
fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}
