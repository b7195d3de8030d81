//! Idempotency-Key: replay, conflict, in-flight, and concurrent duplicates.

use payd::app::Role;
use serde_json::json;
use sqlx::Connection;

use crate::common::TestApp;

fn body() -> serde_json::Value {
    json!({"amount": 2500, "currency": "EUR", "payment_method_id": "pm_test_success", "description": "order 7"})
}

#[tokio::test]
async fn a_repeated_request_answers_the_first_answer_and_creates_nothing() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let h = [("Idempotency-Key", "order-7")];
    let (s1, first) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    let (s2, second) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, second, "same status and body");
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 1);

    // Same key, another body.
    let mut other = body();
    other["amount"] = json!(2501);
    let (status, err) = app.call_as(&app.key, "POST", "/v1/payments", Some(other), &h).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");

    // Keys are per merchant: another merchant's identical key is a new request.
    let (_, other_key) = app.other_merchant().await;
    let (status, theirs) = app.call_as(&other_key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 201);
    assert_ne!(theirs["id"], first["id"]);

    // Too long a key.
    let long = "k".repeat(256);
    let (status, err) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &[("Idempotency-Key", &long)]).await;
    assert_eq!(status, 400, "{err}");
    app.stop().await;
}

#[tokio::test]
async fn a_key_still_in_flight_is_409() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    // Hold the key's lock as a first request in flight would.
    let mut holder = sqlx::PgConnection::connect(&app.vars["PAYD_DATABASE__URL"]).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind(app.merchant.as_str())
        .bind("busy-key")
        .execute(&mut holder)
        .await
        .unwrap();
    let h = [("Idempotency-Key", "busy-key")];
    let (status, err) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_in_use");
    holder.close().await.unwrap();
    let (status, _) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 201, "the key is free once the first request ends");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_duplicates_create_one_payment() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let calls = (0..10).map(|_| app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &[("Idempotency-Key", "burst")]));
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every 201 is the same payment: {results:?}");
    assert!(results.iter().all(|(s, b)| *s == 201 || (*s == 409 && b["error"]["code"] == "idempotency_key_in_use")));
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_refund_refunds_once() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let path = format!("/v1/payments/{id}/refund");
    let h = [("Idempotency-Key", "refund-1")];
    let (s1, r1) = app.call_as(&app.key, "POST", &path, Some(json!({"amount": 400})), &h).await;
    let (s2, r2) = app.call_as(&app.key, "POST", &path, Some(json!({"amount": 400})), &h).await;
    assert_eq!((s1, s2), (200, 200), "{r1} {r2}");
    assert_eq!(r1["id"], r2["id"]);
    assert_eq!(app.count("SELECT count(*) FROM refunds WHERE payment_id = $1", id).await, 1);
    app.stop().await;
}
