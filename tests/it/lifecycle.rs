//! Cancel, refund, list and tenant isolation.

use payd::app::Role;
use serde_json::json;

use crate::common::{Receiver, TestApp, verify_webhook};

#[tokio::test]
async fn a_pending_payment_is_canceled_and_never_charged() {
    // No worker yet: the payment stays pending.
    let app = TestApp::spawn_with(&[Role::Api, Role::Dispatcher], &[]).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 1500).await;
    let id = p["id"].as_str().unwrap();

    let (status, err) = app.post(&format!("/v1/payments/{id}/refund"), json!({})).await;
    assert_eq!(status, 400, "a pending payment cannot be refunded: {err}");
    assert_eq!(err["error"]["type"], "invalid_request_error");

    let (status, canceled) =
        app.post(&format!("/v1/payments/{id}/cancel"), json!({"reason": "Customer requested cancellation"})).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "Customer requested cancellation");
    assert!(canceled["canceled_at"].is_string());

    let (status, again) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "payment_already_canceled");

    let hook = receiver.wait_for("payment.canceled", id).await;
    assert!(verify_webhook(&secret, &hook));

    // A worker arrives: the canceled attempt's message finds nothing to do.
    let workers = app.start_more(&[Role::Worker]).await;
    let sentinel = app.create_payment("pm_test_success", 1).await;
    app.wait_status(sentinel["id"].as_str().unwrap(), "succeeded").await;
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), 1, "only the sentinel was charged: {charges:?}");
    assert_eq!(charges[0].amount, 1);
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(p["status"], "canceled");
    let attempt: String = sqlx::query_scalar("SELECT status FROM attempts WHERE payment_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempt, "canceled");
    workers.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn finished_payments_cannot_be_canceled() {
    let app = TestApp::spawn().await;
    let ok = app.create_payment("pm_test_success", 100).await;
    let bad = app.create_payment("pm_test_decline", 100).await;
    for (p, status) in [(&ok, "succeeded"), (&bad, "failed")] {
        let id = p["id"].as_str().unwrap();
        app.wait_status(id, status).await;
        let (code, err) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
        assert_eq!(code, 400, "{err}");
        assert_eq!(err["error"]["code"], "payment_unexpected_state");
    }
    app.stop().await;
}

#[tokio::test]
async fn partial_then_full_refunds_run_through_the_provider() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let refund_path = format!("/v1/payments/{id}/refund");

    for bad in [json!({"amount": 0}), json!({"amount": -5}), json!({"amount": "300"})] {
        let (status, err) = app.post(&refund_path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["param"], "amount");
    }

    let (status, refund) = app.post(&refund_path, json!({"amount": 300, "reason": "Product returned"})).await;
    assert_eq!(status, 200, "{refund}");
    assert_eq!(refund["object"], "refund");
    assert!(refund["id"].as_str().unwrap().starts_with("ref_"));
    assert_eq!((refund["amount"].as_i64(), refund["currency"].as_str()), (Some(300), Some("USD")));
    assert_eq!(refund["payment_id"], id);
    assert_eq!(refund["reason"], "Product returned");
    assert!(["pending", "succeeded"].contains(&refund["status"].as_str().unwrap()));

    let partly = app.wait_payment(id, "300 refunded", |p| p["amount_refunded"] == 300).await;
    assert_eq!(partly["status"], "refunded");
    assert_eq!(partly["refunds"][0]["status"], "succeeded");

    let (status, err) = app.post(&refund_path, json!({"amount": 701})).await;
    assert_eq!(status, 422, "more than what is left: {err}");
    assert_eq!(err["error"]["code"], "amount_too_large");

    let (status, rest) = app.post(&refund_path, json!({})).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["amount"], 700, "the default is all that is left");

    let (status, err) = app.post(&refund_path, json!({"amount": 1})).await;
    assert_eq!(status, 409, "everything is refunded or being refunded: {err}");

    let full = app.wait_payment(id, "all refunded", |p| p["amount_refunded"] == 1000).await;
    assert_eq!(full["status"], "refunded");
    assert_eq!(full["refunds"].as_array().unwrap().len(), 2);

    let refunded_hooks = crate::common::eventually("two payment.refunded webhooks", crate::common::WAIT, || async {
        let hooks: Vec<_> = receiver.all().into_iter().filter(|r| r.json()["type"] == "payment.refunded").collect();
        (hooks.len() == 2).then_some(hooks)
    })
    .await;
    assert!(refunded_hooks.iter().all(|h| verify_webhook(&secret, h)));
    let mut amounts: Vec<i64> =
        refunded_hooks.iter().map(|h| h.json()["data"]["object"]["amount_refunded"].as_i64().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, [300, 1000]);

    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    let ops: Vec<(&str, i64)> = charges.iter().map(|c| (c.operation.as_str(), c.amount)).collect();
    assert_eq!(ops, [("purchase", 1000), ("refund", 300), ("refund", 700)]);
    app.stop().await;
}

#[tokio::test]
async fn lists_are_filtered_paged_and_newest_first() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for method in ["pm_test_success", "pm_test_decline", "pm_test_success"] {
        ids.push(app.create_payment(method, 100).await["id"].as_str().unwrap().to_owned());
    }
    app.wait_status(&ids[1], "failed").await;
    app.wait_status(&ids[2], "succeeded").await;
    app.wait_status(&ids[0], "succeeded").await;

    let (status, page) = app.get("/v1/payments?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page["object"], "list");
    assert_eq!(page["total_count"], 3);
    assert_eq!(page["has_more"], true);
    let got: Vec<&str> = page["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()], "newest first");

    let (_, rest) = app.get("/v1/payments?limit=2&offset=2").await;
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());

    let (_, failed) = app.get("/v1/payments?status=failed").await;
    assert_eq!(failed["total_count"], 1);
    assert_eq!(failed["data"][0]["id"], ids[1].as_str());

    let (_, future) = app.get("/v1/payments?created_after=2999-01-01T00:00:00Z").await;
    assert_eq!(future["total_count"], 0);
    let (_, past) =
        app.get("/v1/payments?created_before=2999-01-01T00:00:00Z&created_after=2000-01-01T00:00:00Z").await;
    assert_eq!(past["total_count"], 3);
    app.stop().await;
}

#[tokio::test]
async fn merchants_see_only_their_own_objects() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 100).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let (_, other_key) = app.other_merchant().await;

    for (method, path, body) in [
        ("GET", format!("/v1/payments/{id}"), None),
        ("POST", format!("/v1/payments/{id}/cancel"), Some(json!({}))),
        ("POST", format!("/v1/payments/{id}/refund"), Some(json!({}))),
        ("GET", format!("/v1/webhook_endpoints/{endpoint}"), None),
        ("GET", format!("/v1/webhook_endpoints/{endpoint}/deliveries"), None),
        ("DELETE", format!("/v1/webhook_endpoints/{endpoint}"), None),
    ] {
        let (status, err) = app.call_as(&other_key, method, &path, body, &[]).await;
        assert_eq!(status, 404, "{method} {path}: {err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    let (_, list) = app.call_as(&other_key, "GET", "/v1/payments", None, &[]).await;
    assert_eq!(list["total_count"], 0);
    let (_, events) = app.call_as(&other_key, "GET", "/v1/events", None, &[]).await;
    assert_eq!(events["total_count"], 0);
    let (_, endpoints) = app.call_as(&other_key, "GET", "/v1/webhook_endpoints", None, &[]).await;
    assert_eq!(endpoints["total_count"], 0);
    // The owner still has everything.
    let (status, _) = app.get(&format!("/v1/webhook_endpoints/{endpoint}")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn endpoints_are_listed_hide_their_secret_and_can_be_deleted() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, secret) = app.add_endpoint(&receiver.url).await;
    assert!(secret.starts_with("whsec_"));
    let (status, got) = app.get(&format!("/v1/webhook_endpoints/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["object"], "webhook_endpoint");
    assert_eq!(got["status"], "enabled");
    assert!(got.get("secret").is_none(), "the secret is shown only on creation");
    let (_, list) = app.get("/v1/webhook_endpoints").await;
    assert_eq!(list["total_count"], 1);
    assert!(list["data"][0].get("secret").is_none());
    let (status, deleted) = app.call("DELETE", &format!("/v1/webhook_endpoints/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted, json!({"id": id, "object": "webhook_endpoint", "deleted": true}));
    let (status, _) = app.get(&format!("/v1/webhook_endpoints/{id}")).await;
    assert_eq!(status, 404);
    // No endpoint, no delivery.
    let p = app.create_payment("pm_test_success", 100).await;
    let pid = p["id"].as_str().unwrap();
    app.wait_status(pid, "succeeded").await;
    // Deliveries are written with their event, so the count is final at commit.
    let queued = app
        .count(
            "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE e.payment_id = $1",
            pid,
        )
        .await;
    assert_eq!(queued, 0, "a delivery was queued for a deleted endpoint");
    assert_eq!(app.count("SELECT count(*) FROM events WHERE payment_id = $1", pid).await, 2, "the events happened");
    assert!(receiver.all().is_empty());
    app.stop().await;
}
