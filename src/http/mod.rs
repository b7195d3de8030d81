//! The HTTP API (axum): routes, extractors and the error mapping. Handlers
//! only extract and call [`crate::service`].

mod attempts;
pub mod error;
pub mod extract;
mod health;
mod payments;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::queue::Amqp;
use crate::service::{Ctx, Outcome};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The use cases' context.
    pub ctx: Ctx,
    /// The broker, for readiness.
    pub amqp: Arc<Amqp>,
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/payments", post(payments::create).get(payments::list))
        .route("/payments/{id}", get(payments::retrieve))
        .route("/payments/{id}/cancel", post(payments::cancel))
        .route("/payments/{id}/refund", post(payments::refund))
        .route("/payments/{id}/attempts", get(attempts::of_payment))
        .route("/attempts", get(attempts::list))
        .route("/attempts/{id}/cancel", post(attempts::cancel))
        .route("/webhook_endpoints", post(webhooks::create).get(webhooks::list))
        .route("/webhook_endpoints/{id}", get(webhooks::retrieve).post(webhooks::update).delete(webhooks::delete))
        .route("/webhook_endpoints/{id}/rotate_secret", post(webhooks::rotate_secret))
        .route("/webhook_deliveries/{id}/retry", post(webhooks::retry_delivery))
        .route("/webhook_endpoints/{id}/deliveries", get(webhooks::deliveries))
        .route("/events", get(webhooks::list_events))
        .route("/events/{id}", get(webhooks::retrieve_event))
        .route("/provider_notifications/{provider}", post(notify))
        .method_not_allowed_fallback(error::method_not_allowed);
    Router::new()
        .nest("/v1", v1)
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

/// A provider's signed notification: no API key, the signature is the proof.
async fn notify(
    axum::extract::State(s): axum::extract::State<AppState>,
    extract::PathId(provider): extract::PathId,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    let signature = headers.get(crate::provider::notification::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    crate::service::notifications::receive(&s.ctx, &provider, signature, &body).await.map(axum::Json)
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        (status, axum::Json(self.body)).into_response()
    }
}

/// How long a graceful shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
