//! A slow provider: a worker's provider calls are bounded by
//! `payments.calls_in_flight`, not by its AMQP prefetch (work messages are
//! acked once their attempt is claimed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use axum::extract::State;
use serde_json::{Value, json};

use crate::common::{TestApp, eventually};

/// A gateway that holds every charge until the test opens its gate.
#[derive(Clone)]
struct HeldGateway {
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Receiver<bool>,
}

async fn charge(State(g): State<HeldGateway>, headers: axum::http::HeaderMap) -> axum::Json<Value> {
    let now = g.in_flight.fetch_add(1, SeqCst) + 1;
    g.peak.fetch_max(now, SeqCst);
    let _ = g.gate.clone().wait_for(|open| *open).await;
    g.in_flight.fetch_sub(1, SeqCst);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
    axum::Json(json!({"id": format!("gw_{key}"), "status": "succeeded"}))
}

#[tokio::test]
async fn provider_calls_in_flight_are_bounded_by_their_setting_not_by_the_prefetch() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let gateway = HeldGateway { in_flight: Arc::default(), peak: Arc::default(), gate };
    let router = axum::Router::new().route("/v1/charges", axum::routing::post(charge)).with_state(gateway.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    let app = TestApp::spawn_with(
        &[],
        &[
            ("PAYD_PROVIDERS__ACME__BASE_URL", url.as_str()),
            ("PAYD_PROVIDERS__ACME__SECRET", "gw"),
            ("PAYD_AMQP__PREFETCH", "2"),
            ("PAYD_PAYMENTS__CALLS_IN_FLIGHT", "5"),
        ],
    )
    .await;
    let method = app.payment_method("acme", "tok_visa").await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(app.create_payment(&method, 100 + i).await["id"].as_str().unwrap().to_owned());
    }
    // More calls than the prefetch at once: the messages were acked.
    eventually("five calls held at the gateway", Duration::from_secs(20), || async {
        (gateway.in_flight.load(SeqCst) == 5).then_some(())
    })
    .await;
    // And no more than the setting, however long the provider takes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gateway.in_flight.load(SeqCst), 5, "calls beyond payments.calls_in_flight");
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE status = 'running'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(running, 5, "only attempts with a call slot are claimed");
    open.send(true).unwrap();
    for id in &ids {
        app.wait_status(id, "succeeded").await;
    }
    assert_eq!(gateway.peak.load(SeqCst), 5);
    app.stop().await;
}
