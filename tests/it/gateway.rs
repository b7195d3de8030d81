//! The HTTP gateway adapter against a fake gateway (wiremock) that answers,
//! fails with 500s, answers too slowly, declines, or answers "pending".

use std::time::Duration;

use payd::testing::{SIGNATURE_HEADER, sign_notification};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::TestApp;

const SECRET: &str = "gw_secret_123";
/// The key of the gateway's notifications, apart from the bearer token.
const NOTIFICATION_SECRET: &str = "gw_notes_456";

async fn app_with_gateway(gateway: &MockServer) -> TestApp {
    TestApp::spawn_with(
        &[],
        &[
            ("PAYD_PROVIDERS__ACME__BASE_URL", gateway.uri().as_str()),
            ("PAYD_PROVIDERS__ACME__SECRET", SECRET),
            ("PAYD_PROVIDERS__ACME__NOTIFICATION_SECRET", NOTIFICATION_SECRET),
            ("PAYD_PROVIDERS__ACME__TIMEOUT", "300ms"),
            ("PAYD_PAYMENTS__RETRY_SCHEDULE", "200ms,200ms,200ms"),
        ],
    )
    .await
}

async fn transaction_of(app: &TestApp, payment: &str) -> String {
    sqlx::query_scalar("SELECT id FROM transactions WHERE payment_id = $1")
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_gateway_charge_carries_the_secret_and_the_idempotency_key() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .and(header("authorization", format!("Bearer {SECRET}").as_str()))
        .and(body_partial_json(json!({"amount": 1500, "currency": "USD", "payment_method": "tok_visa"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_ch_1", "status": "succeeded"})))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = app_with_gateway(&gateway).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 1500).await;
    let id = p["id"].as_str().unwrap();
    assert_eq!(p["provider"], "acme");
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["provider_reference"], "gw_ch_1");
    let requests = gateway.received_requests().await.unwrap();
    assert_eq!(requests[0].headers.get("idempotency-key").unwrap().to_str().unwrap(), transaction_of(&app, id).await);

    let (status, err) =
        app.post("/v1/payments", json!({"amount": 1, "currency": "USD", "payment_method_id": "pm_nope_tok"})).await;
    assert_eq!(status, 404, "an unconfigured gateway: {err}");
    assert_eq!(err["error"]["param"], "payment_method_id");
    app.stop().await;
}

#[tokio::test]
async fn gateway_500s_and_slow_answers_are_retried_with_the_same_key() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "gw_late", "status": "succeeded"}))
                .set_delay(Duration::from_secs(2)),
        )
        .up_to_n_times(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_ch_2", "status": "succeeded"})))
        .mount(&gateway)
        .await;
    let app = app_with_gateway(&gateway).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 2000).await;
    let id = p["id"].as_str().unwrap();
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["attempt_count"], 3);
    let (_, attempts) = app.get(&format!("/v1/payments/{id}/attempts")).await;
    let codes: Vec<Option<&str>> =
        attempts["data"].as_array().unwrap().iter().map(|a| a["error_code"].as_str()).rev().collect();
    assert_eq!(codes, [Some("processing_error"), Some("timeout"), None]);
    let txn = transaction_of(&app, id).await;
    let requests = gateway.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r.headers.get("idempotency-key").unwrap().to_str().unwrap() == txn),
        "one key for every attempt"
    );
    app.stop().await;
}

#[tokio::test]
async fn gateway_declines_fail_at_once() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .and(body_partial_json(json!({"payment_method": "tok_poor"})))
        .respond_with(
            ResponseTemplate::new(402)
                .set_body_json(json!({"error": {"code": "insufficient_funds", "message": "Not enough money"}})),
        )
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .and(body_partial_json(json!({"payment_method": "tok_odd"})))
        .respond_with(ResponseTemplate::new(400).set_body_string("<html>nope</html>"))
        .mount(&gateway)
        .await;
    let app = app_with_gateway(&gateway).await;
    for (method_id, code) in [("tok_poor", "insufficient_funds"), ("tok_odd", "card_declined")] {
        let p = app.create_payment(&app.payment_method("acme", method_id).await, 100).await;
        let failed = app.wait_status(p["id"].as_str().unwrap(), "failed").await;
        assert_eq!(failed["error_code"], code);
        assert_eq!(failed["attempt_count"], 1, "a decline is not retried");
    }
    assert_eq!(gateway.received_requests().await.unwrap().len(), 2, "one call each");
    app.stop().await;
}

#[tokio::test]
async fn a_pending_gateway_charge_completes_from_its_notification() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"id": "gw_ch_9", "status": "pending"})))
        .mount(&gateway)
        .await;
    let app = app_with_gateway(&gateway).await;
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, 990).await;
    let id = p["id"].as_str().unwrap();
    let txn = transaction_of(&app, id).await;
    crate::common::eventually("the attempt to wait for the gateway", crate::common::WAIT, || async {
        let r: Option<String> = sqlx::query_scalar("SELECT provider_reference FROM transactions WHERE id = $1")
            .bind(&txn)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        r.filter(|r| r == "gw_ch_9")
    })
    .await;
    let body = json!({"id": "evt_gw_1", "type": "charge.succeeded", "idempotency_key": txn, "reference": "gw_ch_9"})
        .to_string();
    let post = |secret: &'static str| {
        let (app, body) = (&app, body.clone());
        async move {
            let sig = sign_notification(secret, time::OffsetDateTime::now_utc().unix_timestamp(), body.as_bytes());
            let resp = app
                .http
                .post(format!("{}/v1/provider_notifications/acme", app.base))
                .header(SIGNATURE_HEADER, sig)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // Signed with the bearer token payd sends the gateway: refused.
    let (status, err) = post(SECRET).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("signature_invalid")), "{err}");
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(p["status"], "pending", "a notification signed with the bearer token changed nothing");
    assert_eq!(post(NOTIFICATION_SECRET).await.0, 200);
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["provider_reference"], "gw_ch_9");
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_authorization_is_captured_with_its_charge_id_and_a_canceled_capture_retry_frees_the_amount() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .and(body_partial_json(json!({"amount": 1000, "capture": false, "payment_method": "tok_visa"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_auth_1", "status": "succeeded"})))
        .expect(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/captures"))
        .and(body_partial_json(json!({"amount": 400, "charge": "gw_auth_1"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_cap_1", "status": "succeeded"})))
        .expect(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/captures"))
        .and(body_partial_json(json!({"amount": 600})))
        // Refused before any work (a 5xx would leave the capture unknown,
        // and its retry could not be canceled: see tests/it/unknown.rs).
        .respond_with(ResponseTemplate::new(429))
        .mount(&gateway)
        .await;
    // Retries far in the future: the failed capture waits, scheduled, for an operator.
    let app = TestApp::spawn_with(
        &[],
        &[
            ("PAYD_PROVIDERS__ACME__BASE_URL", gateway.uri().as_str()),
            ("PAYD_PROVIDERS__ACME__SECRET", SECRET),
            ("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h"),
        ],
    )
    .await;
    let pm = app.payment_method("acme", "tok_visa").await;
    let (_, p) = app
        .post("/v1/payments", json!({"amount": 1000, "currency": "USD", "payment_method_id": pm, "capture": false}))
        .await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "requires_capture").await;
    let (status, _) = app.post(&format!("/v1/payments/{id}/capture"), json!({"amount": 400})).await;
    assert_eq!(status, 200);
    let paid = app.wait_payment(id, "first capture", |p| p["amount_captured"] == 400).await;
    assert_eq!(paid["status"], "succeeded");
    let (status, p) = app.post(&format!("/v1/payments/{id}/capture"), json!({"amount": 600})).await;
    assert_eq!((status, p["amount_capturable"].as_i64()), (200, Some(0)), "{p}");

    let (_, attempts) = crate::common::eventually("the capture retry is scheduled", crate::common::WAIT, || async {
        let (s, list) = app.get(&format!("/v1/attempts?payment_id={id}&status=scheduled")).await;
        // The retry: attempt 2 of the capture (attempt 1 is scheduled too, briefly, before it runs).
        (list["total_count"] == 1 && list["data"][0]["number"] == 2).then_some((s, list))
    })
    .await;
    let att = attempts["data"][0]["id"].as_str().unwrap();
    let (status, canceled) =
        app.post(&format!("/v1/attempts/{att}/cancel"), json!({"reason": "merchant gave up"})).await;
    assert_eq!(status, 200, "{canceled}");
    let p = app.assert_amounts(id).await;
    assert_eq!(
        (p["status"].as_str(), p["amount_captured"].as_i64(), p["amount_capturable"].as_i64()),
        (Some("succeeded"), Some(400), Some(600))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_currency_the_provider_does_not_take_is_refused_with_422() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/charges"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "gw_ch_cur", "status": "succeeded"})))
        .mount(&gateway)
        .await;
    let app = TestApp::spawn_with(
        &[],
        &[
            ("PAYD_PROVIDERS__ACME__BASE_URL", gateway.uri().as_str()),
            ("PAYD_PROVIDERS__ACME__SECRET", SECRET),
            ("PAYD_PROVIDERS__ACME__CURRENCIES", "USD, eur"),
        ],
    )
    .await;
    let pm = app.payment_method("acme", "tok_visa").await;
    let mut accepted = Vec::new();
    for (currency, status) in [("USD", 201), ("EUR", 201), ("gbp", 422), ("JPY", 422)] {
        let (got, body) =
            app.post("/v1/payments", json!({"amount": 100, "currency": currency, "payment_method_id": pm})).await;
        assert_eq!(got, status, "{currency}: {body}");
        if status == 201 {
            accepted.push(body["id"].as_str().unwrap().to_owned());
        }
        if status == 422 {
            assert_eq!(
                (body["error"]["code"].as_str(), body["error"]["param"].as_str()),
                (Some("currency_not_supported"), Some("currency"))
            );
        }
    }
    // The sandbox takes every currency.
    let (status, _) = app
        .post("/v1/payments", json!({"amount": 100, "currency": "JPY", "payment_method_id": "pm_test_success"}))
        .await;
    assert_eq!(status, 201);
    // The accepted ones were charged at the gateway; the refused ones never reached it.
    for id in &accepted {
        app.wait_status(id, "succeeded").await;
    }
    let mut sent: Vec<String> = gateway
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["currency"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    assert_eq!(sent, ["EUR", "USD"]);
    app.stop().await;
}

/// Contract §12: a 4xx that is no decline is payd's or the gateway's
/// configuration, never the card's.
#[tokio::test]
async fn a_gateway_4xx_without_a_decline_code_is_a_provider_error() {
    let gateway = MockServer::start().await;
    for (token, status, code) in
        [("tok_auth", 401, None), ("tok_gone", 404, None), ("tok_poor", 422, Some("insufficient_funds"))]
    {
        let body = match code {
            Some(c) => json!({"error": {"code": c, "message": "no"}}),
            None => json!({"error": {"message": "bad key"}}),
        };
        Mock::given(method("POST"))
            .and(path("/v1/charges"))
            .and(body_partial_json(json!({"payment_method": token})))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&gateway)
            .await;
    }
    let app = app_with_gateway(&gateway).await;
    for (token, expected) in
        [("tok_auth", "provider_error"), ("tok_gone", "provider_error"), ("tok_poor", "insufficient_funds")]
    {
        let p = app.create_payment(&app.payment_method("acme", token).await, 100).await;
        let failed = app.wait_status(p["id"].as_str().unwrap(), "failed").await;
        assert_eq!(failed["error_code"], expected, "{token}: {failed}");
        assert_eq!(failed["attempt_count"], 1, "{token}: a configuration error is not retried");
    }
    app.stop().await;
}
