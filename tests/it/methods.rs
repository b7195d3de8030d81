//! Stored payment methods and `Prefer: wait`.

use std::time::{Duration, Instant};

use payd::app::Role;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn payment_methods_are_created_listed_used_and_deleted() {
    let app = TestApp::spawn().await;
    let (status, pm) = app
        .post(
            "/v1/payment_methods",
            json!({"provider": "sandbox", "token": "tok_success", "expires_at": "2099-12", "customer_id": "cust_1"}),
        )
        .await;
    assert_eq!(status, 201, "{pm}");
    let id = pm["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pm_"));
    assert_eq!(
        (pm["object"].as_str(), pm["type"].as_str(), pm["provider"].as_str()),
        (Some("payment_method"), Some("card"), Some("sandbox"))
    );
    let (status, got) = app.get(&format!("/v1/payment_methods/{id}")).await;
    assert_eq!((status, &got), (200, &pm));
    let declining = app.payment_method("sandbox", "tok_decline").await;
    let (_, list) = app.get("/v1/payment_methods").await;
    assert_eq!(list["total_count"], 2);
    assert_eq!(list["data"][0]["id"], declining.as_str(), "newest first");
    let (_, list) = app.get("/v1/payment_methods?customer_id=cust_1").await;
    assert_eq!(list["total_count"], 1);

    let ok = app.create_payment(&id, 1200).await;
    assert_eq!(
        (ok["payment_method_id"].as_str(), ok["provider"].as_str(), ok["method"].as_str()),
        (Some(id.as_str()), Some("sandbox"), Some("card"))
    );
    app.wait_status(ok["id"].as_str().unwrap(), "succeeded").await;
    let bad = app.create_payment(&declining, 1200).await;
    let bad = app.wait_status(bad["id"].as_str().unwrap(), "failed").await;
    assert_eq!(bad["error_code"], "card_declined");

    // Another merchant cannot see or use it.
    let (_, other_key) = app.other_merchant().await;
    let (status, _) = app.call_as(&other_key, "GET", &format!("/v1/payment_methods/{id}"), None, &[]).await;
    assert_eq!(status, 404);
    let (status, err) = app
        .call_as(
            &other_key,
            "POST",
            "/v1/payments",
            Some(json!({"amount": 1, "currency": "USD", "payment_method_id": id})),
            &[],
        )
        .await;
    assert_eq!((status, err["error"]["param"].as_str()), (404, Some("payment_method_id")), "{err}");

    let (status, deleted) = app.call("DELETE", &format!("/v1/payment_methods/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted, json!({"id": id, "object": "payment_method", "deleted": true}));
    let (status, _) = app.call("DELETE", &format!("/v1/payment_methods/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&format!("/v1/payment_methods/{id}")).await;
    assert_eq!(status, 404);
    let (status, err) =
        app.post("/v1/payments", json!({"amount": 1, "currency": "USD", "payment_method_id": id})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (404, Some("payment_method_id")), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn card_numbers_and_bad_methods_are_refused() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    for (body, param) in [
        (json!({"provider": "sandbox", "token": "4242424242424242"}), "token"),
        (json!({"provider": "sandbox", "token": "4242 4242 4242 4242"}), "token"),
        (json!({"provider": "sandbox", "token": "tok_visa"}), "token"),
        (json!({"provider": "nowhere", "token": "tok_x"}), "provider"),
        (json!({"provider": "sandbox", "token": "tok_success", "expires_at": "12/30"}), "expires_at"),
        (json!({"provider": "sandbox", "token": "tok_success", "type": "cash"}), "type"),
        (json!({"provider": "sandbox"}), "token"),
        (json!({"provider": "sandbox", "token": "tok_success", "cvc": "123"}), "cvc"),
    ] {
        let (status, err) = app.post("/v1/payment_methods", body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["param"], param, "{body}: {err}");
    }
    let (_, err) =
        app.post("/v1/payment_methods", json!({"provider": "sandbox", "token": "4242-4242-4242-4242"})).await;
    assert_eq!(err["error"]["code"], "card_number_refused");
    assert_eq!(app.count("SELECT count(*) FROM payment_methods WHERE token <> $1", "").await, 0, "nothing was stored");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_method_fails_as_expired_card_without_a_provider_call() {
    let app = TestApp::spawn().await;
    let (_, pm) = app
        .post("/v1/payment_methods", json!({"provider": "sandbox", "token": "tok_success", "expires_at": "2020-01"}))
        .await;
    let p = app.create_payment(pm["id"].as_str().unwrap(), 300).await;
    let p = app.wait_status(p["id"].as_str().unwrap(), "failed").await;
    assert_eq!(p["error_code"], "expired_card");
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    assert!(calls.is_empty(), "the provider was never asked: {calls:?}");
    app.stop().await;
}

#[tokio::test]
async fn prefer_wait_answers_the_outcome() {
    let app = TestApp::spawn().await;
    let create = |method: &'static str, wait: &'static str, capture: bool| {
        let app = &app;
        async move {
            let body = json!({"amount": 900, "currency": "USD", "payment_method_id": method, "capture": capture});
            app.call_as(&app.key, "POST", "/v1/payments", Some(body), &[("Prefer", wait)]).await
        }
    };
    let (status, p) = create("pm_test_success", "wait=10", true).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["status"], "succeeded");

    let (status, err) = create("pm_test_decline", "wait=10", true).await;
    assert_eq!(status, 402, "{err}");
    assert_eq!(err["error"]["type"], "payment_error");
    assert_eq!(err["error"]["code"], "card_declined");
    assert_eq!(err["error"]["payment"]["status"], "failed");
    assert!(err["error"]["payment"]["id"].as_str().unwrap().starts_with("pay_"));

    let (status, p) = create("pm_test_success", "respond-async, wait=10", false).await;
    assert_eq!((status, p["status"].as_str()), (201, Some("requires_capture")), "{p}");

    // The async method settles about a second later, by provider notification.
    let started = Instant::now();
    let (status, p) = create("pm_test_async", "wait=10", true).await;
    assert_eq!((status, p["status"].as_str()), (201, Some("succeeded")), "{p}");
    assert!(started.elapsed() < Duration::from_secs(8), "woken by the notification, not the deadline");

    for bad in ["wait=31", "wait=-1", "wait=soon"] {
        let (status, err) = create("pm_test_success", bad, true).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    app.stop().await;
}

#[tokio::test]
async fn prefer_wait_gives_up_after_n_seconds_with_the_pending_payment() {
    // No worker: nothing settles.
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let started = Instant::now();
    let (status, p) = app
        .call_as(
            &app.key,
            "POST",
            "/v1/payments",
            Some(json!({"amount": 900, "currency": "USD", "payment_method_id": "pm_test_success"})),
            &[("Prefer", "wait=1")],
        )
        .await;
    let waited = started.elapsed();
    assert_eq!((status, p["status"].as_str()), (201, Some("pending")), "{p}");
    assert!(waited >= Duration::from_millis(950) && waited < Duration::from_secs(5), "{waited:?}");
    app.stop().await;
}
