//! Crashes and process lifecycle, with the real binary: a worker killed
//! between the provider call and its commit, SIGTERM, bad settings.

use std::process::Command;

use std::time::Duration;

use payd::app::Role;
use serde_json::Value;

use crate::common::{Receiver, TestApp, WAIT, eventually, payd, run_json, verify_webhook, wait_exit};

async fn worker_dies_at(point: &str) {
    let app = TestApp::spawn_with(&[Role::Api, Role::Dispatcher], &[]).await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = app.add_endpoint(&receiver.url).await;
    let mut child = crate::common::spawn(&mut payd(
        &app,
        &["serve", "--role", "worker"],
        &[("PAYD_FAULTS__CRASH_AT", point), ("PAYD_PAYMENTS__PROVIDER_TIMEOUT", "1s")],
    ));
    let p = app.create_payment("pm_test_success", 1234).await;
    let id = p["id"].as_str().unwrap();

    let status = wait_exit(&mut child, WAIT).await;
    assert!(!status.success(), "the worker aborted at {point}");
    // The provider charged, payd recorded nothing.
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), 1);
    let (_, pending) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(pending["status"], "pending");

    // A healthy worker takes over: the unacked message comes back, the
    // expired claim is handed back, and the provider answers the same key.
    let worker = app.start_more(&[Role::Worker]).await;
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["amount_captured"], 1234);
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), 1, "exactly one charge at the provider");
    assert_eq!(charges[0].calls, 2, "the retry reused the idempotency key");
    assert_eq!(app.count("SELECT count(*) FROM attempts WHERE payment_id = $1 AND status = 'succeeded'", id).await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM transactions WHERE payment_id = $1 AND status = 'succeeded'", id).await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payment_id = $1 AND type = 'payment.succeeded'", id).await,
        1
    );
    let hook = receiver.wait_for("payment.succeeded", id).await;
    assert!(verify_webhook(&secret, &hook));
    let delivered: i64 = app
        .count(
            "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.endpoint_id = $1 AND e.type = 'payment.succeeded'",
            &endpoint,
        )
        .await;
    assert_eq!(delivered, 1);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_worker_killed_after_the_provider_call_charges_once() {
    worker_dies_at("worker.after_provider_call").await;
}

#[tokio::test]
async fn a_worker_killed_just_before_commit_charges_once() {
    worker_dies_at("worker.before_commit").await;
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = crate::common::spawn(&mut payd(
        &app,
        &["serve"],
        &[("PAYD_HTTP__LISTEN", &listen), ("PAYD_PROVIDERS__SANDBOX__NOTIFY_URL", "http://127.0.0.1:9/lost")],
    ));
    let http = reqwest::Client::new();
    let ready: Value = eventually("the child to be ready", WAIT, || async {
        let r = http.get(format!("http://{listen}/health/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(ready["postgres"], "ok");
    assert_eq!(ready["rabbitmq"], "ok");
    let live = http.get(format!("http://{listen}/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    // A request in flight at SIGTERM: it waits 3 s for a payment that stays
    // pending (the sandbox's notification goes nowhere), and must still get
    // its answer before the process exits.
    let waiting = http
        .post(format!("http://{listen}/v1/payments"))
        .bearer_auth(&app.key)
        .header("Prefer", "wait=3")
        .json(&serde_json::json!({"amount": 700, "currency": "USD", "payment_method_id": "pm_test_async"}))
        .send();
    let term = async {
        eventually("the waited-for payment to be accepted", WAIT, || async {
            (app.count("SELECT count(*) FROM payments WHERE amount = $1::bigint", "700").await == 1).then_some(())
        })
        .await;
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
    };
    let (answer, ()) = tokio::join!(waiting, term);
    let answer = answer.expect("the request in flight is answered, not cut off");
    assert_eq!(answer.status(), 201);
    assert_eq!(answer.headers()["preference-applied"], "wait=3");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "pending", "{body}");
    let status = wait_exit(&mut child, Duration::from_secs(25)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    app.stop().await;
}

#[tokio::test]
async fn bad_settings_stop_startup_naming_the_setting() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    for (var, value, name) in [
        ("PAYD_PAYMENTS__RETRY_SCHEDULE", "1m,soon", "retry_schedule"),
        ("PAYD_HTTP__LISTEN", "nowhere", "listen"),
        ("PAYD_AMQP__URL", "http://rabbit", "amqp.url"),
        ("PAYD_FAULTS__CRASH_AT", "worker.somewhere", "crash_at"),
    ] {
        let out = payd(&app, &["migrate"], &[(var, value)]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{var}: {stderr}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_cli_creates_merchants_and_keys_that_the_api_accepts() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let m = run_json(&app, &["merchants", "create", "--name", "Acme"]);
    assert_eq!(m["name"], "Acme");
    let merchant = m["id"].as_str().unwrap();
    assert!(merchant.starts_with("mer_"));
    let test_key = m["secret_key"].as_str().unwrap();
    assert!(test_key.starts_with("sk_test_"));
    assert!(m["publishable_key"].as_str().unwrap().starts_with("pk_test_"));
    let (status, created) = app
        .call_as(
            test_key,
            "POST",
            "/v1/payments",
            Some(serde_json::json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success"})),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{created}");

    // Live keys see only live objects; the sandbox methods do not exist in live mode.
    let live = run_json(&app, &["keys", "create", "--merchant", merchant, "--live"]);
    let live_key = live["secret_key"].as_str().unwrap();
    assert!(live_key.starts_with("sk_live_"));
    assert!(live["publishable_key"].as_str().unwrap().starts_with("pk_live_"));
    let (_, list) = app.call_as(live_key, "GET", "/v1/payments", None, &[]).await;
    assert_eq!(list["total_count"], 0);
    let (status, _) =
        app.call_as(live_key, "GET", &format!("/v1/payments/{}", created["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(status, 404);
    let (status, err) = app
        .call_as(
            live_key,
            "POST",
            "/v1/payments",
            Some(serde_json::json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success"})),
            &[],
        )
        .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["param"], "payment_method_id");

    let ops = run_json(&app, &["keys", "create", "--ops"]);
    let ops_key = ops["secret_key"].as_str().unwrap();
    assert!(ops_key.starts_with("sk_ops_"));
    let (status, seen) =
        app.call_as(ops_key, "GET", &format!("/v1/payments/{}", created["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(status, 200, "operator keys read every merchant's payments: {seen}");
    let (status, _) = app
        .call_as(ops_key, "POST", &format!("/v1/payments/{}/cancel", created["id"].as_str().unwrap()), None, &[])
        .await;
    assert_eq!(status, 403, "but change none");

    let out =
        payd(&app, &["keys", "create", "--merchant", "mer_00000000000000000000000000000000"], &[]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such merchant"));
    app.stop().await;
}

#[tokio::test]
async fn development_mode_creates_the_test_merchant_once() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    for _ in 0..2 {
        let dev = app.start_more_with(&[Role::Api], &[("PAYD_ENV", "development")]).await;
        let base = format!("http://{}", dev.addr.unwrap());
        let resp = app
            .http
            .get(format!("{base}/v1/payments"))
            .header("Authorization", format!("Bearer {}", payd::testing::DEV_SECRET_KEY))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        dev.stop().await;
    }
    let merchants: i64 = sqlx::query_scalar("SELECT count(*) FROM merchants WHERE name = 'Test merchant'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // The harness' own merchant is also called "Test merchant".
    assert_eq!(merchants, 2);
    app.stop().await;
}
