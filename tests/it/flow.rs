//! The whole pipe: HTTP → Postgres → RabbitMQ → worker → sandbox → signed webhook.

use payd::app::Role;
use serde_json::json;

use crate::common::{Receiver, TestApp, WAIT, eventually, verify_webhook};

#[tokio::test]
async fn a_payment_succeeds_and_signed_webhooks_arrive() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;

    let (status, created) = app
        .post(
            "/v1/payments",
            json!({"amount": 1000, "currency": "usd", "payment_method_id": "pm_test_success",
                   "description": "Payment for order #12345", "metadata": {"order_id": "12345"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["object"], "payment");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["currency"], "USD");
    assert_eq!(created["livemode"], false);
    assert_eq!(created["metadata"], json!({"order_id": "12345"}));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("pay_"));
    assert_eq!(created["_links"]["self"]["href"], format!("/v1/payments/{id}"));

    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["amount_captured"], 1000);
    assert_eq!(paid["attempt_count"], 1);
    assert!(paid["processed_at"].is_string());
    assert!(paid["provider_reference"].as_str().unwrap().starts_with("ch_"));

    let created_hook = receiver.wait_for("payment.created", id).await;
    assert_eq!(
        created_hook.json()["data"]["object"],
        created,
        "payment.created carries the payment exactly as created"
    );
    let succeeded_hook = receiver.wait_for("payment.succeeded", id).await;
    for hook in [&created_hook, &succeeded_hook] {
        assert!(verify_webhook(&secret, hook), "signature must verify: {:?}", hook.headers);
        assert_eq!(hook.header("content-type"), "application/json");
        let event = hook.json();
        assert_eq!(hook.header("webhook-id"), event["id"].as_str().unwrap());
        assert_eq!(event["object"], "event");
        assert_eq!(event["livemode"], false);
    }
    assert_eq!(succeeded_hook.json()["data"]["object"]["status"], "succeeded");
    assert_eq!(created_hook.json()["data"]["object"]["status"], "pending");
    // A wrong secret must not verify: the check can fail.
    assert!(!verify_webhook(&payd::webhooks::generate_secret(), &succeeded_hook));

    // The events are listed and the delivery recorded as succeeded.
    let (_, events) = app.get(&format!("/v1/events?payment_id={id}")).await;
    let types: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["payment.succeeded", "payment.created"]);
    let event_id = succeeded_hook.header("webhook-id");
    let (status, event) = app.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(event["type"], "payment.succeeded");

    // Exactly one charge at the provider.
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!((charges[0].amount, charges[0].calls), (1000, 1));
    app.stop().await;
}

#[tokio::test]
async fn declined_methods_fail_with_their_code_and_a_webhook() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    for (method, code) in [
        ("pm_test_decline", "card_declined"),
        ("pm_test_insufficient_funds", "insufficient_funds"),
        ("pm_test_expired", "expired_card"),
    ] {
        let p = app.create_payment(method, 500).await;
        let id = p["id"].as_str().unwrap();
        let failed = app.wait_status(id, "failed").await;
        assert_eq!(failed["error_code"], code);
        assert!(failed["failure_message"].is_string());
        assert_eq!(failed["amount_captured"], 0);
        let hook = receiver.wait_for("payment.failed", id).await;
        assert!(verify_webhook(&secret, &hook));
        assert_eq!(hook.json()["data"]["object"]["error_code"], code);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_event_again() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    // The first two sends are refused; retries follow the 1 s test schedule.
    receiver.answer(&[500, 503]);
    let (endpoint, secret) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 700).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let deliveries = eventually("both deliveries to succeed", WAIT, || async {
        let (_, list) = app.get(&format!("/v1/webhook_endpoints/{endpoint}/deliveries")).await;
        let data = list["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 2 && data.iter().all(|d| d["status"] == "succeeded")).then_some(data)
    })
    .await;
    let attempts: i64 = deliveries.iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts, 4, "two refused sends and two successful ones: {deliveries:?}");
    assert!(deliveries.iter().all(|d| d["last_status_code"] == 200 && d["delivered_at"].is_string()));

    let sends = receiver.all();
    assert_eq!(sends.len(), 4);
    let mut by_id: std::collections::HashMap<String, usize> = Default::default();
    for r in &sends {
        assert!(verify_webhook(&secret, r), "every retry is signed afresh");
        assert_eq!(r.header("webhook-id"), r.json()["id"].as_str().unwrap(), "webhook-id is the event id");
        *by_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(by_id.len(), 2, "two events; retries reuse the event id: {by_id:?}");
    let logged: i64 = app
        .count(
            "SELECT count(*) FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1",
            &endpoint,
        )
        .await;
    assert_eq!(logged, 4, "every send is logged");
    app.stop().await;
}

#[tokio::test]
async fn events_for_an_endpoint_are_only_those_it_subscribed_to() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (status, ep) =
        app.post("/v1/webhook_endpoints", json!({"url": receiver.url, "enabled_events": ["payment.failed"]})).await;
    assert_eq!(status, 201, "{ep}");
    let ok = app.create_payment("pm_test_success", 100).await;
    let bad = app.create_payment("pm_test_decline", 100).await;
    app.wait_status(ok["id"].as_str().unwrap(), "succeeded").await;
    receiver.wait_for("payment.failed", bad["id"].as_str().unwrap()).await;
    // Deliveries are written with their event, so this count is final.
    let pending: i64 =
        app.count("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", ep["id"].as_str().unwrap()).await;
    assert_eq!(pending, 1, "only the failed event is queued for this endpoint");
    assert!(receiver.all().iter().all(|r| r.json()["type"] == "payment.failed"));
    app.stop().await;
}

#[tokio::test]
async fn roles_can_run_in_separate_instances() {
    // api alone accepts; a separate worker + dispatcher instance finishes the job.
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 4200).await;
    let id = p["id"].as_str().unwrap();
    let workers = app.start_more(&[Role::Worker, Role::Dispatcher]).await;
    app.wait_status(id, "succeeded").await;
    let hook = receiver.wait_for("payment.succeeded", id).await;
    assert!(verify_webhook(&secret, &hook));
    workers.stop().await;
    app.stop().await;
}
