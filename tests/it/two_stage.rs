//! Two-stage payments: authorize with `capture: false`, capture in parts,
//! void by cancelling; chargebacks and their reversals. After every
//! operation the payment's amounts must equal the sums of its transactions.

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually};

async fn authorized(app: &TestApp, amount: i64) -> String {
    let (status, p) = app
        .post(
            "/v1/payments",
            json!({"amount": amount, "currency": "EUR", "payment_method_id": "pm_test_success", "capture": false}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["capture"], false);
    let id = p["id"].as_str().unwrap().to_owned();
    let p = app.wait_status(&id, "requires_capture").await;
    assert_eq!(p["amount_capturable"], amount);
    assert_eq!(p["amount_captured"], 0);
    app.assert_amounts(&id).await;
    id
}

/// Waits until the payment's pending captures have settled.
async fn settled(app: &TestApp, id: &str) -> Value {
    eventually(&format!("captures of {id} settle"), WAIT, || async {
        let (_, list) = app.get(&format!("/v1/payments/{id}/transactions")).await;
        let busy = list["data"].as_array().unwrap().iter().any(|t| t["status"] == "pending");
        (!busy).then_some(())
    })
    .await;
    app.assert_amounts(id).await
}

fn types(list: &Value) -> Vec<(String, String, i64)> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
                t["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_authorization_is_captured_in_parts_never_beyond_what_was_authorized() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.add_endpoint(&receiver.url).await;
    let id = authorized(&app, 1000).await;
    receiver.wait_for("payment.requires_capture", &id).await;
    let capture = format!("/v1/payments/{id}/capture");

    let (status, err) = app.post(&capture, json!({"amount": 1001})).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "amount_too_large");
    assert_eq!(err["error"]["param"], "amount");
    for bad in [json!({"amount": 0}), json!({"amount": "5"}), json!({"amount": 5, "currency": "EUR"})] {
        let (status, err) = app.post(&capture, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }

    let (status, p) = app.post(&capture, json!({"amount": 300})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["amount_capturable"], 700, "the capture is reserved at once: {p}");
    app.assert_amounts(&id).await;
    let p = settled(&app, &id).await;
    assert_eq!(p["status"], "succeeded");
    assert_eq!((p["amount_captured"].as_i64(), p["amount_capturable"].as_i64()), (Some(300), Some(700)));
    let hook = receiver.wait_for("payment.succeeded", &id).await;
    assert_eq!(hook.json()["data"]["object"]["amount_captured"], 300);

    // A second partial capture after the payment succeeded, then the rest by default.
    let (status, _) = app.post(&capture, json!({"amount": 200})).await;
    assert_eq!(status, 200);
    settled(&app, &id).await;
    let (status, p) = app.post(&capture, json!({})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["amount_capturable"], 0);
    let p = settled(&app, &id).await;
    assert_eq!((p["amount_captured"].as_i64(), p["amount_capturable"].as_i64()), (Some(1000), Some(0)));

    let (status, err) = app.post(&capture, json!({})).await;
    assert_eq!(status, 400, "nothing is capturable: {err}");
    assert_eq!(err["error"]["code"], "payment_unexpected_state");

    let (_, list) = app.get(&format!("/v1/payments/{id}/transactions")).await;
    let mut seen = types(&list);
    seen.reverse(); // oldest first
    assert_eq!(
        seen,
        [
            ("authorize".into(), "succeeded".into(), 1000),
            ("capture".into(), "succeeded".into(), 300),
            ("capture".into(), "succeeded".into(), 200),
            ("capture".into(), "succeeded".into(), 500),
        ]
    );
    assert!(list["data"][0]["id"].as_str().unwrap().starts_with("txn_"));
    assert_eq!(list["data"][0]["object"], "transaction");
    // Events are final at the commit of each capture; the receiver may not have them all yet.
    let succeeded =
        app.count("SELECT count(*) FROM events WHERE payment_id = $1 AND type = 'payment.succeeded'", &id).await;
    assert_eq!(succeeded, 1, "one payment.succeeded for three captures");

    // Captured money is refundable as usual.
    let (status, refund) = app.post(&format!("/v1/payments/{id}/refund"), json!({"amount": 400})).await;
    assert_eq!(status, 200, "{refund}");
    app.wait_payment(&id, "refunded 400", |p| p["amount_refunded"] == 400).await;
    app.assert_amounts(&id).await;

    // Each capture reached the provider once, with its own idempotency key.
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    let ops: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(ops, ["authorize", "capture", "capture", "capture", "refund"]);
    assert!(calls.iter().all(|c| c.calls == 1), "{calls:?}");
    app.stop().await;
}

#[tokio::test]
async fn cancelling_an_authorization_voids_it_at_the_provider() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.add_endpoint(&receiver.url).await;
    let id = authorized(&app, 800).await;
    let (status, p) = app.post(&format!("/v1/payments/{id}/cancel"), json!({"reason": "out of stock"})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["status"], "canceled");
    assert_eq!(p["amount_capturable"], 0);
    assert_eq!(p["cancellation_reason"], "out of stock");
    receiver.wait_for("payment.canceled", &id).await;
    let p = settled(&app, &id).await;
    assert_eq!(p["status"], "canceled");
    let (_, list) = app.get(&format!("/v1/payments/{id}/transactions")).await;
    assert_eq!(types(&list)[0], ("void".into(), "succeeded".into(), 800));
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    assert_eq!(calls.iter().map(|c| c.operation.as_str()).collect::<Vec<_>>(), ["authorize", "void"]);

    let (status, err) = app.post(&format!("/v1/payments/{id}/capture"), json!({})).await;
    assert_eq!(status, 400, "a voided authorization cannot be captured: {err}");
    let (status, _) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
    assert_eq!(status, 409);
    app.stop().await;
}

#[tokio::test]
async fn a_declined_authorization_fails_and_a_purchase_cannot_be_captured() {
    let app = TestApp::spawn().await;
    let (_, p) = app
        .post(
            "/v1/payments",
            json!({"amount": 500, "currency": "USD", "payment_method_id": "pm_test_decline", "capture": false}),
        )
        .await;
    let id = p["id"].as_str().unwrap();
    let p = app.wait_status(id, "failed").await;
    assert_eq!(p["error_code"], "card_declined");
    app.assert_amounts(id).await;
    let (status, _) = app.post(&format!("/v1/payments/{id}/capture"), json!({})).await;
    assert_eq!(status, 400);

    let bought = app.create_payment("pm_test_success", 500).await;
    let bought = bought["id"].as_str().unwrap();
    app.wait_status(bought, "succeeded").await;
    let (status, err) = app.post(&format!("/v1/payments/{bought}/capture"), json!({})).await;
    assert_eq!(status, 400, "a purchase has nothing to capture: {err}");
    let (status, _) = app.post("/v1/payments/pay_00000000000000000000000000000000/capture", json!({})).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_pending_authorization_cannot_be_captured_yet() {
    // No worker: the authorization stays pending.
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let (_, p) = app
        .post(
            "/v1/payments",
            json!({"amount": 500, "currency": "USD", "payment_method_id": "pm_test_success", "capture": false}),
        )
        .await;
    let id = p["id"].as_str().unwrap();
    let (status, err) = app.post(&format!("/v1/payments/{id}/capture"), json!({})).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "payment_unexpected_state");
    let (status, err) = app.post(&format!("/v1/payments/{id}/chargebacks"), json!({"amount": 100})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("payment_unexpected_state")),
        "nothing charged yet: {err}"
    );
    app.stop().await;
}

#[tokio::test]
async fn chargebacks_count_as_refunded_and_reversals_give_it_back() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap();
    let path = format!("/v1/payments/{id}/chargebacks");
    app.wait_status(id, "succeeded").await;

    for bad in [json!({}), json!({"amount": -1}), json!({"amount": 1, "currency": "USD"})] {
        let (status, err) = app.post(&path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let (status, cb) = app.post(&path, json!({"amount": 600, "reason": "fraudulent"})).await;
    assert_eq!(status, 200, "{cb}");
    assert_eq!(
        (cb["type"].as_str(), cb["status"].as_str(), cb["amount"].as_i64()),
        (Some("chargeback"), Some("succeeded"), Some(600))
    );
    assert_eq!(cb["reason"], "fraudulent");
    let p = app.assert_amounts(id).await;
    assert_eq!((p["status"].as_str(), p["amount_refunded"].as_i64()), (Some("refunded"), Some(600)));

    // What is left bounds refunds and further chargebacks.
    let (status, err) = app.post(&format!("/v1/payments/{id}/refund"), json!({"amount": 401})).await;
    assert_eq!(status, 422, "{err}");
    let (status, err) = app.post(&path, json!({"amount": 401})).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "amount_too_large");

    let reversals = format!("/v1/payments/{id}/chargeback_reversals");
    let (status, err) = app.post(&reversals, json!({"transaction_id": "txn_00000000000000000000000000000000"})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (404, Some("transaction_id")), "{err}");
    let (_, list) = app.get(&format!("/v1/payments/{id}/transactions")).await;
    let purchase = list["data"].as_array().unwrap().iter().find(|t| t["type"] == "purchase").unwrap()["id"].clone();
    let (status, err) = app.post(&reversals, json!({"transaction_id": purchase})).await;
    assert_eq!(status, 400, "only chargebacks are reversed: {err}");

    let (status, rev) = app.post(&reversals, json!({"transaction_id": cb["id"]})).await;
    assert_eq!(status, 200, "{rev}");
    assert_eq!((rev["type"].as_str(), rev["amount"].as_i64()), (Some("chargeback_reversal"), Some(600)));
    assert_eq!(rev["source_transaction_id"], cb["id"]);
    let p = app.assert_amounts(id).await;
    assert_eq!((p["status"].as_str(), p["amount_refunded"].as_i64()), (Some("succeeded"), Some(0)));
    let (status, err) = app.post(&reversals, json!({"transaction_id": cb["id"]})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("chargeback_already_reversed")), "{err}");

    // A full chargeback leaves nothing to refund; no provider call was ever made for them.
    let (status, _) = app.post(&path, json!({"amount": 1000})).await;
    assert_eq!(status, 200);
    let (status, err) = app.post(&format!("/v1/payments/{id}/refund"), json!({})).await;
    assert_eq!(status, 409, "{err}");
    app.assert_amounts(id).await;
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    assert_eq!(calls.len(), 1, "only the purchase reached the provider: {calls:?}");
    app.stop().await;
}
