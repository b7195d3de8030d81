//! The HTTP API (axum): routes, extractors and the error mapping. Handlers
//! only extract and call [`crate::service`].

mod attempts;
mod console;
mod error;
mod extract;
mod health;
mod keys;
mod openapi;
mod payment_methods;
mod payments;
mod providers;
mod ratelimit;
mod schemas;
mod toolkit;
mod webhook_tools;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::queue::Amqp;
use crate::service::wait::PaymentWatch;
use crate::service::{ApiError, Ctx, Outcome};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The use cases' context.
    pub ctx: Ctx,
    /// The broker, for readiness.
    pub amqp: Arc<Amqp>,
    /// Status changes, for `Prefer: wait`.
    pub watch: PaymentWatch,
    /// The OpenAPI document, generated once at start.
    pub openapi: Arc<serde_json::Value>,
}

/// The `/v1` API: every route is registered through `routes!`, which takes
/// its path and method from the handler's `#[utoipa::path]`, so a route
/// cannot exist without its description (a test checks no route bypasses it).
pub fn api(limiter: ratelimit::RateLimit) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(payments::create, payments::list))
        .routes(routes!(payments::search))
        .routes(routes!(payments::retrieve, payments::update))
        .routes(routes!(payments::cancel))
        .routes(routes!(payments::capture))
        .routes(routes!(payments::refund))
        .routes(routes!(payments::chargeback))
        .routes(routes!(payments::reverse_chargeback))
        .routes(routes!(payments::add_tags))
        .routes(routes!(payments::remove_tag))
        .routes(routes!(payments::transactions))
        .routes(routes!(payments::audit_log))
        .routes(routes!(attempts::of_payment))
        .routes(routes!(attempts::list))
        .routes(routes!(attempts::cancel))
        .routes(routes!(toolkit::retry_now))
        .routes(routes!(toolkit::reschedule))
        .routes(routes!(toolkit::bulk_cancel))
        .routes(routes!(toolkit::create_hold, toolkit::list_holds))
        .routes(routes!(toolkit::release_hold))
        .routes(routes!(toolkit::list_transactions))
        .routes(routes!(toolkit::resolve_transaction))
        .routes(routes!(payment_methods::create, payment_methods::list))
        .routes(routes!(payment_methods::retrieve, payment_methods::delete))
        .routes(routes!(providers::create, providers::list))
        .routes(routes!(providers::retrieve, providers::delete))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::retrieve, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(webhook_tools::attempts))
        .routes(routes!(webhook_tools::stats))
        .routes(routes!(webhook_tools::test_send))
        .routes(routes!(webhook_tools::advance))
        .routes(routes!(webhook_tools::recover))
        .routes(routes!(webhook_tools::retrieve_recovery))
        .routes(routes!(webhooks::list_events))
        .routes(routes!(webhooks::retrieve_event))
        .routes(routes!(webhooks::expunge_event))
        .layer(axum::middleware::from_fn_with_state(limiter, ratelimit::enforce))
        // Added after the layer: providers sign their notifications and have
        // no API key to be limited by.
        .routes(routes!(notify))
        .routes(routes!(providers::stripe_event))
}

/// The OpenAPI document of [`api`].
#[cfg(test)]
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api(ratelimit::RateLimit::off()).split_for_parts().1
}

/// Longest a client may take to send a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request may take, `Prefer: wait=30` included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// The whole router. `state.openapi` is filled from [`api`].
pub fn router(mut state: AppState) -> Router {
    let (v1, doc) =
        api(ratelimit::RateLimit::new(&state.ctx.settings.rate_limit, Some(state.ctx.clone()))).split_for_parts();
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    doc["webhooks"] = schemas::webhooks();
    state.openapi = Arc::new(doc);
    let v1 = v1.method_not_allowed_fallback(error::method_not_allowed);
    Router::new()
        .merge(v1)
        .merge(console::router())
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(observe_requests))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        // A client that sends its body slowly is cut off (400 body_invalid),
        // and no request holds a connection longer than the longest
        // `Prefer: wait` (30 s) with room to answer.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

/// `GET /metrics`: Prometheus text (see [`crate::observe`] for the list).
/// Open to the machine itself; from anywhere else it takes an operator key
/// (`Authorization: Bearer sk_ops_…`, Prometheus' `authorization`
/// setting), so an API listening on a public address does not show its
/// traffic to the world.
async fn metrics(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    // Without the peer's address (a router served without connect info, as in tests) it is local.
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    let local = peer.is_none_or(|axum::extract::ConnectInfo(addr)| addr.ip().is_loopback());
    if !local {
        let header = req.headers().get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        let principal =
            crate::service::auth::authenticate(&s.ctx, header, "/metrics from another host needs an operator key")
                .await?;
        if principal.kind != crate::domain::KeyKind::Ops {
            return Err(ApiError::forbidden("/metrics from another host needs an operator key"));
        }
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::observe::render()).into_response())
}

/// Counts every answer by route template (never the raw path: ids would
/// make the label set unbounded) and status, and times it.
async fn observe_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    // A client chooses the method: only the standard ones become labels,
    // so requests cannot grow the metric set.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    crate::observe::http_request(&method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

/// A provider's signed notification about a call it answered "pending":
/// no API key, the signature (`payd-provider-signature: t=…,v1=…`, HMAC-SHA256
/// with the provider's secret) is the proof.
#[utoipa::path(post, path = "/v1/provider_notifications/{provider}", operation_id = "receive_provider_notification", tag = "providers", security(()),
    params(("provider" = String, Path, description = "sandbox or a configured gateway")),
    responses(
        (status = 200, description = "Applied (or a duplicate, ignored)"),
        (status = 400, description = "Bad signature or notification", body = openapi::ErrorResponse),
        (status = 404, description = "Unknown provider or transaction", body = openapi::ErrorResponse),
    ))]
async fn notify(
    axum::extract::State(s): axum::extract::State<AppState>,
    extract::PathId(provider): extract::PathId,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, crate::service::ApiError> {
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

#[cfg(test)]
mod tests {
    /// `api()`'s source: the only place `/v1` routes are registered.
    fn api_source() -> &'static str {
        let src = include_str!("mod.rs");
        &src[src.find("pub fn api(").unwrap()..src.find("/// The OpenAPI document of").unwrap()]
    }

    #[test]
    fn no_v1_route_bypasses_its_openapi_description() {
        // `routes!` registers a handler under the path and method of its
        // `#[utoipa::path]`; a plain `.route(…)` would add an undescribed one.
        assert!(!api_source().contains(".route("), "register /v1 routes with routes!(…) only");
        let src = include_str!("mod.rs");
        let router = &src[src.find("pub fn router(").unwrap()..src.find("#[cfg(test)]\nmod tests").unwrap()];
        for line in router.lines().filter(|l| l.contains(".route(") || l.contains(".nest(")) {
            assert!(!line.contains("\"/v1"), "a /v1 route outside api(): {line}");
        }
    }

    #[test]
    fn every_described_handler_is_routed() {
        let files = [
            ("payments", include_str!("payments.rs")),
            ("attempts", include_str!("attempts.rs")),
            ("webhooks", include_str!("webhooks.rs")),
            ("payment_methods", include_str!("payment_methods.rs")),
            ("keys", include_str!("keys.rs")),
            ("providers", include_str!("providers.rs")),
            ("webhook_tools", include_str!("webhook_tools.rs")),
            ("toolkit", include_str!("toolkit.rs")),
            ("", include_str!("mod.rs").split("#[cfg(test)]\nmod tests").next().unwrap()),
        ];
        let api = api_source();
        let mut described = 0;
        for (module, src) in files {
            for chunk in src.split("#[utoipa::path(").skip(1) {
                let name = chunk.split("async fn ").nth(1).and_then(|s| s.split('(').next()).unwrap();
                let routed = if module.is_empty() { format!("routes!({name})") } else { format!("{module}::{name}") };
                assert!(api.contains(&routed), "{routed} is described but not routed");
                described += 1;
            }
        }
        let doc = super::openapi_document();
        let operations: usize = doc
            .paths
            .paths
            .values()
            .map(|item| {
                let v = serde_json::to_value(item).unwrap();
                ["get", "post", "delete", "put", "patch"].iter().filter(|m| v.get(**m).is_some()).count()
            })
            .sum();
        assert_eq!(operations, described, "one operation per described handler");
    }
}
