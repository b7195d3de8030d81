//! `GET /metrics`: the Prometheus text reflects what payd did. The recorder
//! is process-wide, so the test reads a payd process of its own (the real
//! binary), whose series only this test moves, whatever runs beside it.

use std::time::Duration;

use payd::app::Role;
use serde_json::json;

use crate::common::{Receiver, TestApp, WAIT, eventually, payd, spawn};

pub(crate) async fn metrics(app: &TestApp) -> String {
    let resp = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    resp.text().await.unwrap()
}

/// The value of the series whose line starts with `name{` and holds every label in `labels`.
pub(crate) fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_transitions_attempts_queues_and_deliveries() {
    // In this process only a scheduler (it touches no series below); every
    // other role runs in the child whose metrics are read.
    let mut app = TestApp::spawn_with(&[Role::Scheduler], &[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = payd(&app, &["serve"], &[("PAYD_HTTP__LISTEN", listen.as_str())]);
    let mut child = spawn(cmd.stderr(std::process::Stdio::null()));
    app.base = format!("http://{listen}");
    let started = std::sync::Mutex::new(&mut child);
    eventually("the payd process is ready", Duration::from_secs(60), || async {
        let exited = started.lock().unwrap().try_wait().unwrap();
        assert!(exited.is_none(), "the payd process exited (port {port} taken?)");
        let ready = app.http.get(format!("{}/health/ready", app.base)).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let receiver = Receiver::start().await;
    app.add_endpoint(&receiver.url).await;
    let gone = Receiver::start().await;
    gone.always(410);
    app.add_endpoint(&gone.url).await;
    let before = metrics(&app).await;

    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    receiver.wait_for("payment.succeeded", id).await;
    let (status, _) = app.post("/v1/payments", json!({"amount": -1})).await;
    assert_eq!(status, 400);

    let checks: Vec<(&str, Vec<&str>)> = vec![
        ("payd_http_requests_total", vec![r#"method="POST""#, r#"route="/v1/payments""#, r#"status="201""#]),
        ("payd_http_requests_total", vec![r#"route="/v1/payments""#, r#"status="400""#]),
        ("payd_http_requests_total", vec![r#"route="/v1/payments/{id}""#, r#"status="200""#]),
        ("payd_http_request_duration_seconds_count", vec![r#"route="/v1/payments""#]),
        ("payd_payment_transitions_total", vec![r#"from="new""#, r#"to="pending""#]),
        ("payd_payment_transitions_total", vec![r#"from="pending""#, r#"to="succeeded""#]),
        ("payd_attempts_total", vec![r#"provider="sandbox""#, r#"operation="purchase""#, r#"outcome="succeeded""#]),
        ("payd_provider_call_duration_seconds_count", vec![r#"provider="sandbox""#]),
        ("payd_queue_published_total", vec![r#"queue="payd.attempts""#]),
        ("payd_queue_consumed_total", vec![r#"queue="payd.attempts""#, r#"result="ack""#]),
        ("payd_queue_handle_duration_seconds_count", vec![r#"queue="payd.attempts""#]),
        ("payd_queue_publish_duration_seconds_count", vec![]),
        ("payd_webhook_deliveries_total", vec![r#"outcome="succeeded""#]),
        ("payd_webhook_deliveries_total", vec![r#"outcome="failed""#]),
        ("payd_webhook_delivery_duration_seconds_count", vec![]),
        ("payd_webhook_endpoints_disabled_total", vec![]),
    ];
    let after = eventually("every metric moved", WAIT, || async {
        let after = metrics(&app).await;
        checks.iter().all(|(name, labels)| value(&after, name, labels) > value(&before, name, labels)).then_some(after)
    })
    .await;
    // Gauges read from Postgres by the scheduler.
    for gauge in ["payd_outbox_pending", "payd_outbox_lag_seconds", "payd_attempts_due"] {
        assert!(after.lines().any(|l| l.starts_with(gauge)), "{gauge} missing");
    }
    // Routes are templates, never raw ids.
    assert!(!after.contains(id), "a payment id leaked into a label");
    drop(child);
    app.stop().await;
}

/// The address of this machine that is not loopback, if it has one.
fn outside_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route.
    socket.connect("192.0.2.255:9").or_else(|_| socket.connect("10.255.255.255:9")).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// `/metrics` is open to the machine itself only: from another address it
/// takes an operator key (and a merchant key is not enough).
#[tokio::test]
async fn metrics_from_another_host_need_an_operator_key() {
    let outside = outside_address().expect("this machine has an address other than loopback");
    let app = TestApp::spawn_with(&[Role::Api], &[("PAYD_HTTP__LISTEN", "0.0.0.0:0")]).await;
    let port = app.running.as_ref().unwrap().addr.unwrap().port();
    let url = format!("http://{outside}:{port}/metrics");
    let resp = app.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no key from another address");
    let resp = app.http.get(&url).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 403, "a merchant key is not an operator key");
    let ops = crate::common::run_json(&app, &["keys", "create", "--ops"]);
    let ops = ops["secret_key"].as_str().unwrap().to_owned();
    let resp = app.http.get(&url).bearer_auth(&ops).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("payd_http_requests_total"));
    let local = app.http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(local.status(), 200, "open to the machine itself");
    app.stop().await;
}
