//! Rate limits, the OpenAPI document, and races between real parallel
//! clients.

use std::collections::BTreeSet;

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, WAIT, eventually, payd, run_json};

#[tokio::test]
async fn rate_limits_are_per_key_with_retry_after() {
    // 12 per minute: one more every 5 s, slow enough that a busy machine
    // cannot refill the bucket between the test's requests.
    let app =
        TestApp::spawn_with(&[Role::Api], &[("PAYD_RATE_LIMIT__PER_MINUTE", "12"), ("PAYD_RATE_LIMIT__BURST", "3")])
            .await;
    let url = format!("{}/v1/payments", app.base);
    let get = |key: String| {
        let http = app.http.clone();
        let url = url.clone();
        async move { http.get(url).bearer_auth(key).send().await.unwrap() }
    };
    for remaining in [2, 1, 0] {
        let resp = get(app.key.clone()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit"], "12");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], remaining.to_string().as_str());
    }
    let resp = get(app.key.clone()).await;
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "one request per 5 s refills: {retry_after}");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // No spelling of the limited key escapes its bucket: the scheme's case is
    // the same key (still limited), anything else is no key at all (401).
    for (spelling, expected) in [
        (format!("bearer {}", app.key), 429),
        (format!("BEARER {}", app.key), 429),
        (format!("Bearer  {}", app.key), 401),
        (format!("Bearer   {}", app.key), 401),
        (format!("Bearer\t{}", app.key), 401),
        (format!("Bearer {}{}", app.key, "x".repeat(200)), 401),
    ] {
        let resp = app.http.get(&url).header("Authorization", &spelling).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), expected, "{spelling:?}");
    }

    // Another key has its own budget; unauthenticated requests are not counted (they are 401).
    let (_, other) = app.other_merchant().await;
    assert_eq!(get(other).await.status(), 200);
    let resp = app.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // After Retry-After, the key may send again.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(get(app.key.clone()).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn zero_turns_rate_limits_off() {
    let app =
        TestApp::spawn_with(&[Role::Api], &[("PAYD_RATE_LIMIT__PER_MINUTE", "0"), ("PAYD_RATE_LIMIT__BURST", "1")])
            .await;
    for _ in 0..30 {
        let (status, _) = app.get("/v1/payments").await;
        assert_eq!(status, 200);
    }
    app.stop().await;
}

/// A concrete path for a templated one: ids of the right shape, unknown.
fn concrete(template: &str) -> String {
    template
        .replace("/payments/{id}", "/payments/pay_00000000000000000000000000000000")
        .replace("/payment_methods/{id}", "/payment_methods/pm_00000000000000000000000000000000")
        .replace("/attempts/{id}", "/attempts/att_00000000000000000000000000000000")
        .replace("/webhook_endpoints/{id}", "/webhook_endpoints/we_00000000000000000000000000000000")
        .replace("/webhook_deliveries/{id}", "/webhook_deliveries/whd_00000000000000000000000000000000")
        .replace("/events/{id}", "/events/evt_00000000000000000000000000000000")
        .replace("/holds/{id}", "/holds/hold_00000000000000000000000000000000")
        .replace("/transactions/{id}", "/transactions/txn_00000000000000000000000000000000")
        .replace("{tag}", "vip")
        .replace("{provider}", "sandbox")
        .replace("{provider_account_id}", "pa_0000000000000000000000000000000a")
}

#[tokio::test]
async fn openapi_describes_every_route_and_every_described_route_exists() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let resp = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let described: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    // The contract's routes (§4–§6), each described.
    let contract = [
        ("POST", "/v1/payments"),
        ("GET", "/v1/payments"),
        ("GET", "/v1/payments/search"),
        ("GET", "/v1/payments/{id}"),
        ("POST", "/v1/payments/{id}"),
        ("POST", "/v1/payments/{id}/cancel"),
        ("POST", "/v1/payments/{id}/capture"),
        ("POST", "/v1/payments/{id}/refund"),
        ("GET", "/v1/payments/{id}/transactions"),
        ("GET", "/v1/payments/{id}/attempts"),
        ("POST", "/v1/payments/{id}/chargebacks"),
        ("POST", "/v1/payments/{id}/chargeback_reversals"),
        ("POST", "/v1/payments/{id}/tags"),
        ("DELETE", "/v1/payments/{id}/tags/{tag}"),
        ("GET", "/v1/payments/{id}/audit_log"),
        ("GET", "/v1/attempts"),
        ("POST", "/v1/attempts/{id}/cancel"),
        ("POST", "/v1/attempts/{id}/retry_now"),
        ("POST", "/v1/attempts/{id}/reschedule"),
        ("POST", "/v1/attempts/bulk_cancel"),
        ("POST", "/v1/holds"),
        ("GET", "/v1/holds"),
        ("POST", "/v1/holds/{id}/release"),
        ("GET", "/v1/transactions"),
        ("POST", "/v1/transactions/{id}/resolve"),
        ("POST", "/v1/payment_methods"),
        ("GET", "/v1/payment_methods"),
        ("GET", "/v1/payment_methods/{id}"),
        ("DELETE", "/v1/payment_methods/{id}"),
        ("POST", "/v1/provider_notifications/{provider}"),
        ("POST", "/v1/provider_notifications/stripe/{provider_account_id}"),
        ("POST", "/v1/provider_accounts"),
        ("GET", "/v1/provider_accounts"),
        ("GET", "/v1/provider_accounts/{id}"),
        ("DELETE", "/v1/provider_accounts/{id}"),
        ("POST", "/v1/api_keys"),
        ("GET", "/v1/api_keys"),
        ("DELETE", "/v1/api_keys/{id}"),
        ("POST", "/v1/webhook_endpoints"),
        ("GET", "/v1/webhook_endpoints"),
        ("GET", "/v1/webhook_endpoints/{id}"),
        ("POST", "/v1/webhook_endpoints/{id}"),
        ("DELETE", "/v1/webhook_endpoints/{id}"),
        ("POST", "/v1/webhook_endpoints/{id}/rotate_secret"),
        ("GET", "/v1/webhook_endpoints/{id}/deliveries"),
        ("POST", "/v1/webhook_deliveries/{id}/retry"),
        ("GET", "/v1/webhook_deliveries/{id}/attempts"),
        ("GET", "/v1/webhook_endpoints/{id}/stats"),
        ("POST", "/v1/webhook_endpoints/{id}/test"),
        ("POST", "/v1/test_helpers/payments/{id}/advance"),
        ("POST", "/v1/webhook_endpoints/{id}/recover"),
        ("GET", "/v1/recoveries/{id}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/{id}"),
        ("POST", "/v1/events/{id}/expunge"),
    ];
    let contract: BTreeSet<(String, String)> =
        contract.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(described, contract, "the document and the contract list the same routes");

    // Every described operation is served (not the unknown-route or wrong-method fallback),
    // has a response for success and an error schema, and references schemas that exist.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Payment",
        "Transaction",
        "Attempt",
        "PaymentMethod",
        "AuditEntry",
        "Endpoint",
        "Event",
        "ErrorResponse",
        "Refund",
        "ProviderAccount",
        "Hold",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    for (method, path) in &described {
        let resp = app
            .http
            .request(method.parse().unwrap(), format!("{}{}", app.base, concrete(path)))
            .bearer_auth(&app.key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(body["error"]["code"], "route_unknown", "{method} {path} is described but not served");
        assert_ne!(status, 405, "{method} {path} is described but not served");
        let op = &paths[path.as_str()][method.to_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|k| k.starts_with('2')), "{method} {path}: no success response");
        if !path.starts_with("/v1/provider_notifications/") {
            assert!(
                responses.contains_key("401") && responses.contains_key("404"),
                "{method} {path}: errors not described"
            );
        }
    }
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling schema reference {name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn twenty_parallel_refunds_never_exceed_what_was_captured() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "succeeded").await;
    let refunds = (0..20).map(|_| {
        let app = &app;
        let path = format!("/v1/payments/{id}/refund");
        async move { app.post(&path, json!({"amount": 150})).await }
    });
    let answers = futures_util::future::join_all(refunds).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 6, "1000 / 150 = 6 refunds fit: {answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 422, "{body}");
        assert_eq!(body["error"]["code"], "amount_too_large");
    }
    let p = app.wait_payment(&id, "six refunds settle", |p| p["amount_refunded"] == 900).await;
    assert_eq!(p["refunds"].as_array().unwrap().len(), 6);
    app.assert_amounts(&id).await;
    let refunded: i64 = payd::testing::sandbox_charges(&app.pool)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.operation == "refund")
        .map(|c| c.amount)
        .sum();
    assert_eq!(refunded, 900, "the provider refunded exactly what payd recorded");
    app.stop().await;
}

#[tokio::test]
async fn ten_parallel_creates_with_one_idempotency_key_make_one_payment() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let body = json!({"amount": 4200, "currency": "USD", "payment_method_id": "pm_test_success"});
    let creates =
        (0..10).map(|_| {
            let app = &app;
            let body = body.clone();
            async move {
                app.call_as(&app.key, "POST", "/v1/payments", Some(body), &[("Idempotency-Key", "order-42")]).await
            }
        });
    let answers = futures_util::future::join_all(creates).await;
    let created: BTreeSet<&str> =
        answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b["id"].as_str().unwrap()).collect();
    assert_eq!(created.len(), 1, "every 201 is the same payment: {answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!((*status, body["error"]["code"].as_str()), (409, Some("idempotency_key_in_use")), "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE amount = 4200 AND currency = $1", "USD").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn capture_racing_cancel_has_exactly_one_winner() {
    let app = TestApp::spawn().await;
    for round in 0..6 {
        let (_, p) = app
            .post(
                "/v1/payments",
                json!({"amount": 500, "currency": "USD", "payment_method_id": "pm_test_success", "capture": false}),
            )
            .await;
        let id = p["id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "requires_capture").await;
        let (capture_path, cancel_path) = (format!("/v1/payments/{id}/capture"), format!("/v1/payments/{id}/cancel"));
        let capture = app.post(&capture_path, json!({}));
        let cancel = app.post(&cancel_path, json!({}));
        let ((cap_status, cap), (can_status, can)) = tokio::join!(capture, cancel);
        let winners = [cap_status, can_status].iter().filter(|s| **s == 200).count();
        assert_eq!(winners, 1, "round {round}: capture {cap_status} {cap}, cancel {can_status} {can}");
        let loser = if cap_status == 200 { &can } else { &cap };
        assert_eq!(loser["error"]["code"], "payment_unexpected_state", "round {round}: {loser}");
        let want = if cap_status == 200 { "succeeded" } else { "canceled" };
        app.wait_status(&id, want).await;
        let p = app.assert_amounts(&id).await;
        let captured = p["amount_captured"].as_i64().unwrap();
        assert_eq!(captured, if cap_status == 200 { 500 } else { 0 }, "round {round}: {p}");
    }
    let ops = run_json(&app, &["keys", "create", "--ops"]);
    let (_, all) = app.call_as(ops["secret_key"].as_str().unwrap(), "GET", "/v1/payments?limit=100", None, &[]).await;
    assert_eq!(all["total_count"], 6);
    app.stop().await;
}

/// Contract §11: with several api processes a key still gets its one
/// budget, not one per process.
#[tokio::test]
async fn rate_limits_hold_for_the_whole_deployment() {
    let app =
        TestApp::spawn_with(&[Role::Api], &[("PAYD_RATE_LIMIT__PER_MINUTE", "12"), ("PAYD_RATE_LIMIT__BURST", "3")])
            .await;
    let mut bases = vec![app.base.clone()];
    let mut children = Vec::new();
    for _ in 0..2 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let args = ["serve", "--role", "api"];
        children.push(crate::common::spawn(&mut payd(&app, &args, &[("PAYD_HTTP__LISTEN", listen.as_str())])));
        let base = format!("http://{listen}");
        eventually("another api process to listen", WAIT, || async {
            app.http.get(format!("{base}/health/live")).send().await.ok().filter(|r| r.status() == 200)
        })
        .await;
        bases.push(base);
    }
    let mut statuses = Vec::new();
    for i in 0..9 {
        let url = format!("{}/v1/payments", bases[i % 3]);
        statuses.push(app.http.get(url).bearer_auth(&app.key).send().await.unwrap().status().as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 3, "one burst of 3 for the deployment, not 3 per process: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    drop(children);
    app.stop().await;
}
