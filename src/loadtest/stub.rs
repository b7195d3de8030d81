//! The provider stub of `payd loadtest --provider-latency`: a local HTTP
//! gateway (the wire protocol of [`crate::provider`]'s gateway adapter)
//! that answers every call `succeeded` after a fixed delay, as a real
//! provider's 100–800 ms would. It counts the calls and the most it had in
//! flight at once, so the report shows whether payd's concurrency, not its
//! prefetch, met the latency.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

/// The provider name payd is configured with for the stub.
pub(super) const NAME: &str = "loadstub";
/// The stub's bearer token.
pub(super) const SECRET: &str = "loadtest_stub_secret";

/// What the stub saw.
#[derive(Default)]
pub(super) struct Stub {
    latency: Duration,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    /// Idempotency keys answered, for inquiries.
    done: Mutex<HashSet<String>>,
}

impl Stub {
    /// Calls answered so far and the most in flight at once.
    pub(super) fn figures(&self) -> (usize, usize) {
        (self.calls.load(Ordering::Relaxed), self.peak.load(Ordering::Relaxed))
    }
}

/// Starts the stub on a free local port; answers it and its base URL.
pub(super) async fn start(latency: Duration) -> anyhow::Result<(Arc<Stub>, String)> {
    let stub = Arc::new(Stub { latency, ..Stub::default() });
    let app = axum::Router::new()
        .route("/v1/{operation}", post(call))
        .route("/v1/operations/{key}", get(inquiry))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok((stub, base))
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {SECRET}"))
}

async fn call(State(stub): State<Arc<Stub>>, Path(operation): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !matches!(operation.as_str(), "charges" | "captures" | "voids" | "refunds") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let now = stub.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    stub.peak.fetch_max(now, Ordering::Relaxed);
    tokio::time::sleep(stub.latency).await;
    stub.in_flight.fetch_sub(1, Ordering::Relaxed);
    stub.calls.fetch_add(1, Ordering::Relaxed);
    let answer = json!({"id": format!("stub_{key}"), "status": "succeeded"});
    stub.done.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
    axum::Json(answer).into_response()
}

async fn inquiry(State(stub): State<Arc<Stub>>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if stub.done.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
        axum::Json(json!({"id": format!("stub_{key}"), "status": "succeeded"})).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
