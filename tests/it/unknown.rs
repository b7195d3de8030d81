//! Unknown outcomes (contract §12) against a real local gateway (wiremock)
//! that charges and then answers too late, that never received the call, or
//! that cannot tell: the payment is never `failed` or `canceled` while a
//! charge may have succeeded, the gateway is asked, and what stays unknown
//! waits for an operator.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{TestApp, WAIT, eventually};

/// A gateway whose charges succeed but answer after payd's 300 ms timeout,
/// and whose inquiry answers `inquiry`.
pub(crate) async fn slow_gateway(inquiry: ResponseTemplate) -> MockServer {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "gw_ch_late", "status": "succeeded"}))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&gateway)
        .await;
    Mock::given(method("GET")).and(path_regex("^/v1/operations/txn_")).respond_with(inquiry).mount(&gateway).await;
    gateway
}

/// The key of the fake gateway's notifications.
const NOTES: &str = "gw_notes";

/// payd with the fake gateway as `acme` (300 ms timeout, one retry after
/// 200 ms), with `extra` settings on top.
pub(crate) async fn app_with(gateway: &MockServer, extra: &[(&str, &str)]) -> TestApp {
    let uri = gateway.uri();
    let mut vars = vec![
        ("PAYD_PROVIDERS__ACME__BASE_URL", uri.as_str()),
        ("PAYD_PROVIDERS__ACME__SECRET", "gw_secret"),
        ("PAYD_PROVIDERS__ACME__NOTIFICATION_SECRET", NOTES),
        ("PAYD_PROVIDERS__ACME__TIMEOUT", "300ms"),
        ("PAYD_PAYMENTS__RETRY_SCHEDULE", "200ms"),
    ];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&[], &vars).await
}

/// Posts the gateway's signed notification; answers the status.
async fn notify(app: &TestApp, note: serde_json::Value) -> u16 {
    let body = note.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let resp = app
        .http
        .post(format!("{}/v1/provider_notifications/acme", app.base))
        .header(payd::testing::SIGNATURE_HEADER, payd::testing::sign_notification(NOTES, now, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

async fn transaction(app: &TestApp, payment: &str) -> (String, String) {
    sqlx::query_as("SELECT id, status FROM transactions WHERE payment_id = $1")
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn events(app: &TestApp, payment: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT type FROM events WHERE payment_id = $1 ORDER BY created_at, id")
        .bind(payment)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// Inquiries the gateway received, for `txn`.
async fn inquiries(gateway: &MockServer, txn: &str) -> usize {
    let wanted = format!("/v1/operations/{txn}");
    gateway.received_requests().await.unwrap().iter().filter(|r| r.url.path() == wanted).count()
}

#[tokio::test]
async fn a_charge_that_timed_out_is_asked_about_and_succeeds_never_failed() {
    let inquiry = ResponseTemplate::new(200).set_body_json(json!({"id": "gw_ch_late", "status": "succeeded"}));
    let gateway = slow_gateway(inquiry).await;
    let app = app_with(&gateway, &[("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "2s")]).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 1200).await;
    let id = p["id"].as_str().unwrap().to_owned();
    // The first call timed out: the transaction is unknown, the payment pending.
    eventually("the transaction to be unknown", WAIT, || async {
        (transaction(&app, &id).await.1 == "unknown").then_some(())
    })
    .await;
    let (_, now) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(now["status"], "pending", "{now}");
    // Canceling now could hide a charge.
    let (status, err) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("outcome_unknown")), "{err}");
    let scheduled: Option<String> =
        sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = $1 AND status = 'scheduled' LIMIT 1")
            .bind(&id)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    if let Some(attempt) = scheduled {
        let (status, err) = app.post(&format!("/v1/attempts/{attempt}/cancel"), json!({})).await;
        assert_eq!((status, err["error"]["code"].as_str()), (409, Some("outcome_unknown")), "{err}");
    }
    // The retry times out too; the inquiry learns the charge succeeded.
    let paid = app.wait_status(&id, "succeeded").await;
    assert_eq!(paid["amount_captured"], 1200);
    let (txn, status) = transaction(&app, &id).await;
    assert_eq!(status, "succeeded");
    assert_eq!(inquiries(&gateway, &txn).await, 1);
    let types = events(&app, &id).await;
    assert!(!types.iter().any(|t| t == "payment.failed" || t == "payment.canceled"), "{types:?}");
    app.assert_amounts(&id).await;
    app.stop().await;
}

#[tokio::test]
async fn a_charge_the_gateway_never_received_fails_after_the_inquiry() {
    let gateway = slow_gateway(ResponseTemplate::new(404)).await;
    let app = app_with(&gateway, &[("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "200ms")]).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 700).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let failed = app.wait_status(&id, "failed").await;
    assert_eq!(failed["error_code"], "provider_unavailable", "{failed}");
    let (txn, status) = transaction(&app, &id).await;
    assert_eq!(status, "failed");
    assert_eq!(inquiries(&gateway, &txn).await, 1, "failed only once the gateway said it never received it");
    assert_eq!(events(&app, &id).await.iter().filter(|t| *t == "payment.failed").count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_outcome_that_stays_unknown_waits_for_an_operator() {
    let gateway = slow_gateway(ResponseTemplate::new(503)).await;
    let app = app_with(&gateway, &[("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "200ms,200ms")]).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 900).await;
    let id = p["id"].as_str().unwrap().to_owned();
    eventually("the inquiry schedule to be used up", WAIT, || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM attempts WHERE payment_id = $1 AND status IN ('scheduled', 'running')",
        )
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let asked: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE payment_id = $1 AND inquiry")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (open == 0 && asked == 2).then_some(())
    })
    .await;
    let (txn, status) = transaction(&app, &id).await;
    assert_eq!(status, "unknown");
    assert_eq!(inquiries(&gateway, &txn).await, 2);
    // Nothing runs again by itself: the provider is not asked forever.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(inquiries(&gateway, &txn).await, 2);
    let (_, now) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(now["status"], "pending", "never failed while the money may have moved: {now}");
    let (status, err) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("outcome_unknown")), "{err}");
    let (_, txns) = app.get(&format!("/v1/payments/{id}/transactions")).await;
    assert_eq!(txns["data"][0]["status"], "unknown", "{txns}");
    let types: Vec<Value> = events(&app, &id).await.into_iter().map(Value::from).collect();
    assert_eq!(types, [json!("payment.created")]);
    app.stop().await;
}

/// The janitor has an end: a provider that answers "pending" and never
/// settles is asked again after `payments.pending_timeout`, then on the
/// inquiry schedule, and then left unknown for an operator; its late
/// notification still settles the payment.
#[tokio::test]
async fn a_call_pending_forever_is_asked_on_the_schedule_and_then_left_to_an_operator() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"id": "gw_ch_slow", "status": "pending"})))
        .mount(&gateway)
        .await;
    let app = app_with(
        &gateway,
        &[("PAYD_PAYMENTS__PENDING_TIMEOUT", "200ms"), ("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "200ms,200ms")],
    )
    .await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 500).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let calls = || async {
        gateway.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/v1/charges").count()
    };
    eventually("the transaction to be left unknown", WAIT, || async {
        (transaction(&app, &id).await.1 == "unknown").then_some(())
    })
    .await;
    // The first call, again after pending_timeout, then after each of the
    // two inquiry steps.
    assert_eq!(calls().await, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(calls().await, 4, "asked no more");
    let (_, now) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(now["status"], "pending");
    let (status, err) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("outcome_unknown")), "{err}");

    // The gateway's notification, however late, settles it.
    let (txn, _) = transaction(&app, &id).await;
    let note = json!({"id": "ntf_slow", "type": "charge.succeeded", "idempotency_key": txn, "reference": "gw_ch_slow"});
    assert_eq!(notify(&app, note).await, 200);
    let paid = app.wait_status(&id, "succeeded").await;
    assert_eq!(paid["amount_captured"], 500);
    app.assert_amounts(&id).await;
    app.stop().await;
}

/// A refund whose outcome is unknown may have been paid out: its amount
/// stays reserved, so it cannot be refunded a second time meanwhile.
#[tokio::test]
async fn a_refund_whose_outcome_is_unknown_keeps_its_amount_reserved() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_ch_r", "status": "succeeded"})))
        .mount(&gateway)
        .await;
    Mock::given(method("POST")).and(path("/v1/refunds")).respond_with(ResponseTemplate::new(503)).mount(&gateway).await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/operations/txn_"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&gateway)
        .await;
    let app = app_with(&gateway, &[("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "1h")]).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 1000).await;
    let id = p["id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "succeeded").await;
    let (status, refund) = app.post(&format!("/v1/payments/{id}/refund"), json!({"amount": 1000})).await;
    assert_eq!(status, 200, "{refund}");
    eventually("the refund's outcome to be unknown", WAIT, || async {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM transactions WHERE payment_id = $1 AND type = 'refund'")
                .bind(&id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        (status.as_deref() == Some("unknown")).then_some(())
    })
    .await;
    let (status, err) = app.post(&format!("/v1/payments/{id}/refund"), json!({"amount": 1000})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("charge_already_refunded")),
        "the unknown refund's 1000 is still reserved: {err}"
    );
    let refunds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE payment_id = $1 AND type = 'refund'")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(refunds, 1);
    app.stop().await;
}

/// A refund the gateway settled as failed and later reports as done: the
/// customer has the money, so the refund is recorded, never dropped.
#[tokio::test]
async fn a_late_refund_success_is_recorded() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_ch_lr", "status": "succeeded"})))
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_rf_1", "status": "failed"})))
        .mount(&gateway)
        .await;
    let app = app_with(&gateway, &[]).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 800).await;
    let id = p["id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "succeeded").await;
    let (status, _) = app.post(&format!("/v1/payments/{id}/refund"), json!({"amount": 300})).await;
    assert_eq!(status, 200);
    let txn: String = eventually("the refund to fail", WAIT, || async {
        sqlx::query_scalar(
            "SELECT id FROM transactions WHERE payment_id = $1 AND type = 'refund' AND status = 'failed'",
        )
        .bind(&id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    })
    .await;
    let note = json!({"id": "ntf_lr", "type": "refund.succeeded", "idempotency_key": txn, "reference": "gw_rf_1"});
    assert_eq!(notify(&app, note).await, 200);
    let refunded = app.wait_payment(&id, "the late refund recorded", |p| p["amount_refunded"] == 300).await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    app.assert_amounts(&id).await;
    assert!(events(&app, &id).await.iter().any(|t| t == "payment.refunded"));
    app.stop().await;
}
