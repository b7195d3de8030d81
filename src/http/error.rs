//! Rendering [`ApiError`] as an HTTP answer, and the fallbacks that keep
//! every answer in the contract's error shape (unknown routes, panics).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::{ApiError, ErrorCode};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(404, ErrorCode::RouteUnknown, "no such route")
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(405, ErrorCode::MethodNotAllowed, "this route does not take that method")
}

/// A panic in a handler: a plain 500, with the cause logged.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
