//! Every 4xx of the contract's table that the API has so far, each with the
//! §3 body, and no 5xx for malformed input.

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::TestApp;

fn assert_error(status: u16, body: &Value, want_status: u16, want_type: &str, want_param: Option<&str>, case: &str) {
    assert_eq!(status, want_status, "{case}: {body}");
    let e = &body["error"];
    assert_eq!(e["type"], want_type, "{case}: {body}");
    assert!(e["code"].as_str().is_some_and(|c| !c.is_empty()), "{case}: code: {body}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}: message: {body}");
    match want_param {
        Some(p) => assert_eq!(e["param"], p, "{case}: param: {body}"),
        None => assert!(e.get("param").is_none(), "{case}: no param expected: {body}"),
    }
}

#[tokio::test]
async fn invalid_payment_bodies_are_400_naming_the_field() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let ok = json!({"amount": 1000, "currency": "USD", "payment_method_id": "pm_test_success"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let long_meta: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        ("missing amount", without("amount"), "amount"),
        ("zero amount", with("amount", json!(0)), "amount"),
        ("negative amount", with("amount", json!(-100)), "amount"),
        ("fractional amount", with("amount", json!(10.5)), "amount"),
        ("string amount", with("amount", json!("1000")), "amount"),
        ("huge amount", with("amount", json!(10_000_000_000_000_i64)), "amount"),
        ("missing currency", without("currency"), "currency"),
        ("unknown currency", with("currency", json!("ABC")), "currency"),
        ("long currency", with("currency", json!("USDX")), "currency"),
        ("numeric currency", with("currency", json!(840)), "currency"),
        ("missing method", without("payment_method_id"), "payment_method_id"),
        ("empty method", with("payment_method_id", json!("")), "payment_method_id"),
        ("long description", with("description", json!("d".repeat(1001))), "description"),
        ("metadata not object", with("metadata", json!(["a"])), "metadata"),
        ("too many metadata keys", with("metadata", Value::Object(long_meta)), "metadata"),
        ("long metadata key", with("metadata", json!({"k".repeat(41): "v"})), "metadata"),
        ("long metadata value", with("metadata", json!({"k": "v".repeat(501)})), "metadata"),
        ("non-string metadata value", with("metadata", json!({"k": 1})), "metadata"),
        ("unknown field", with("amout", json!(1)), "amout"),
        ("capture not bool", with("capture", json!("yes")), "capture"),
        ("long external_key", with("external_key", json!("e".repeat(65))), "external_key"),
    ];
    for (case, body, param) in cases {
        let (status, err) = app.post("/v1/payments", body).await;
        assert_error(status, &err, 400, "invalid_request_error", Some(param), case);
    }
    // Malformed JSON and wrong shapes.
    for (case, raw) in
        [("truncated", "{\"amount\": 10"), ("array", "[1,2]"), ("string", "\"hi\""), ("garbage", "\u{0}\u{1}")]
    {
        let (status, body) = app.post_raw("/v1/payments", "application/json", raw.to_owned()).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{case}");
    }
    app.stop().await;
}

#[tokio::test]
async fn auth_media_type_size_and_lookup_errors() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let body = json!({"amount": 1000, "currency": "USD", "payment_method_id": "pm_test_success"});

    // 401: missing, malformed, unknown key.
    let resp = app.http.get(format!("{}/v1/payments", app.base)).send().await.unwrap();
    let status = resp.status().as_u16();
    assert_error(status, &resp.json().await.unwrap(), 401, "authentication_error", None, "no key");
    for key in ["sk_test_nope", "", "Basic abc"] {
        let (status, err) = app.call_as(key, "GET", "/v1/payments", None, &[]).await;
        assert_error(status, &err, 401, "authentication_error", None, key);
    }

    // 403: a publishable key may only create payments.
    let pk: String =
        sqlx::query_scalar("SELECT key_prefix FROM api_keys WHERE merchant_id = $1 AND kind = 'publishable'")
            .bind(&app.merchant)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(pk.starts_with("pk_test_"));
    let m = payd::testing::create_merchant(&app.pool, "Publishing merchant").await.unwrap();
    let (status, created) = app.call_as(&m.publishable_key, "POST", "/v1/payments", Some(body.clone()), &[]).await;
    assert_eq!(status, 201, "{created}");
    let (status, err) = app
        .call_as(&m.publishable_key, "GET", &format!("/v1/payments/{}", created["id"].as_str().unwrap()), None, &[])
        .await;
    assert_error(status, &err, 403, "permission_error", None, "publishable read");
    let (status, err) = app.call_as(&m.publishable_key, "GET", "/v1/payments", None, &[]).await;
    assert_error(status, &err, 403, "permission_error", None, "publishable list");

    // 404: unknown ids and unknown payment methods.
    for path in [
        "/v1/payments/pay_00000000000000000000000000000000",
        "/v1/payments/nonsense",
        "/v1/events/evt_x",
        "/v1/webhook_endpoints/we_1",
    ] {
        let (status, err) = app.get(path).await;
        assert_error(status, &err, 404, "invalid_request_error", None, path);
    }
    let (status, err) =
        app.post("/v1/payments", json!({"amount": 1000, "currency": "USD", "payment_method_id": "pm_card_visa"})).await;
    assert_error(status, &err, 404, "invalid_request_error", Some("payment_method_id"), "unknown method");
    let (status, err) = app.get("/v1/nothing-here").await;
    assert_error(status, &err, 404, "invalid_request_error", None, "unknown route");

    // 413 and 415.
    let big = json!({"amount": 1000, "currency": "USD", "payment_method_id": "pm_test_success", "description": "x".repeat(70_000)});
    let (status, err) = app.post("/v1/payments", big).await;
    assert_error(status, &err, 413, "invalid_request_error", None, "body over 64 KiB");
    let (status, err) = app.post_raw("/v1/payments", "text/plain", body.to_string()).await;
    assert_error(status, &err, 415, "invalid_request_error", None, "text/plain");
    app.stop().await;
}

#[tokio::test]
async fn list_queries_are_checked() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=paid", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-01", "created_before"),
        ("sort=asc", "sort"),
    ] {
        let (status, err) = app.get(&format!("/v1/payments?{query}")).await;
        assert_error(status, &err, 400, "invalid_request_error", Some(param), query);
    }
    let (status, _) = app.get("/v1/payments?limit=100&offset=0&status=pending").await;
    assert_eq!(status, 200);
    // Typed filters of the other lists: an unknown value is named, not an empty list.
    for (path, param) in [("/v1/events?type=payment.exploded", "type"), ("/v1/attempts?status=done", "status")] {
        let (status, err) = app.get(path).await;
        assert_error(status, &err, 400, "invalid_request_error", Some(param), path);
    }
    let (status, _) = app.get("/v1/events?type=payment.created").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn conflicts_and_refusals() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let body = |extra: Value| {
        let mut b = json!({"amount": 1000, "currency": "USD", "payment_method_id": "pm_test_success"});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    // external_key is unique per merchant.
    let (status, _) = app.post("/v1/payments", body(json!({"external_key": "ext-1"}))).await;
    assert_eq!(status, 201);
    let (status, err) = app.post("/v1/payments", body(json!({"external_key": "ext-1"}))).await;
    assert_error(status, &err, 409, "invalid_request_error", Some("external_key"), "external_key reused");
    let (_, other_key) = app.other_merchant().await;
    let (status, _) =
        app.call_as(&other_key, "POST", "/v1/payments", Some(body(json!({"external_key": "ext-1"}))), &[]).await;
    assert_eq!(status, 201, "another merchant may use the same external_key");

    // One pending payment per reference; the message names it.
    let (status, first) = app.post("/v1/payments", body(json!({"reference": "policy-9"}))).await;
    assert_eq!(status, 201);
    let (status, err) = app.post("/v1/payments", body(json!({"reference": "policy-9"}))).await;
    assert_error(status, &err, 422, "invalid_request_error", Some("reference"), "pending reference");
    assert_eq!(err["error"]["code"], "pending_payment_exists");
    assert!(err["error"]["message"].as_str().unwrap().contains(first["id"].as_str().unwrap()));

    // Webhook URLs.
    for (url, status_want) in [("not a url", 400), ("ftp://example.com/x", 400)] {
        let (status, err) = app.post("/v1/webhook_endpoints", json!({"url": url, "enabled_events": ["*"]})).await;
        assert_error(status, &err, status_want, "invalid_request_error", Some("url"), url);
    }
    let (status, err) = app
        .post("/v1/webhook_endpoints", json!({"url": "http://127.0.0.1/x", "enabled_events": ["payment.exploded"]}))
        .await;
    assert_error(status, &err, 400, "invalid_request_error", Some("enabled_events"), "unknown event type");
    let (status, err) =
        app.post("/v1/webhook_endpoints", json!({"url": "http://127.0.0.1/x", "enabled_events": []})).await;
    assert_error(status, &err, 400, "invalid_request_error", Some("enabled_events"), "no events");
    app.stop().await;
}

#[tokio::test]
async fn private_webhook_targets_are_refused_outside_development() {
    let app = TestApp::spawn_with(&[Role::Api], &[("PAYD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "false")]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://172.16.5.4/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://192.0.2.10/hook",
        "http://198.51.100.7/hook",
        "http://203.0.113.9/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[ff02::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[2001:db8::1]/hook",
    ] {
        let (status, err) = app.post("/v1/webhook_endpoints", json!({"url": url, "enabled_events": ["*"]})).await;
        assert_error(status, &err, 422, "invalid_request_error", Some("url"), url);
        assert_eq!(err["error"]["code"], "url_not_allowed");
    }
    // Live mode takes https only.
    let live =
        payd::testing::add_key(&app.pool, Some(&app.merchant), payd::testing::KeyKind::Secret, true).await.unwrap();
    let (status, err) = app
        .call_as(
            &live,
            "POST",
            "/v1/webhook_endpoints",
            Some(json!({"url": "http://example.com/hook", "enabled_events": ["*"]})),
            &[],
        )
        .await;
    assert_error(status, &err, 422, "invalid_request_error", Some("url"), "http in live mode");
    app.stop().await;
}

#[tokio::test]
async fn hostile_input_never_gets_a_5xx() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let ok = json!({"amount": 1000, "currency": "USD", "payment_method_id": "pm_test_success"});
    let mut nul_desc = ok.clone();
    nul_desc["description"] = json!("a\u{0}b");
    let mut nul_meta = ok.clone();
    nul_meta["metadata"] = json!({"k\u{0}": "v"});
    for (case, body, param) in
        [("NUL in description", nul_desc, "description"), ("NUL in metadata", nul_meta, "metadata")]
    {
        let (status, err) = app.post("/v1/payments", body).await;
        assert_error(status, &err, 400, "invalid_request_error", Some(param), case);
    }
    let (status, err) = app.get("/v1/payments?reference=%00").await;
    assert_error(status, &err, 400, "invalid_request_error", Some("reference"), "NUL in query");
    let (status, err) = app.get("/v1/payments/%FF%FE").await;
    assert_error(status, &err, 400, "invalid_request_error", Some("id"), "undecodable id");
    let (status, err) = app.get("/v1/payments/pay_%00").await;
    assert_error(status, &err, 400, "invalid_request_error", Some("id"), "NUL in the id");
    let (status, err) = app.get("/v1/payments?reference=%FF").await;
    assert!(status == 400, "invalid UTF-8 in the query: {status} {err}");
    let (status, err) = app.call("PUT", "/v1/payments", None).await;
    assert_eq!(status, 405, "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let (status, _) = app.post_raw("/v1/payments", "application/json", deep).await;
    assert_eq!(status, 400, "deeply nested JSON");
    for (method, path) in
        [("POST", "/v1/payments/x/cancel"), ("POST", "/v1/payments/x/refund"), ("DELETE", "/v1/webhook_endpoints/x")]
    {
        let (status, err) = app.call(method, path, Some(json!({"unknown": true}))).await;
        assert!(status < 500, "{method} {path}: {status} {err}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_value_payd_does_not_know_in_the_database_is_an_error_never_a_default() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap();
    // A row written by something else than payd (a bad migration, a hand edit).
    sqlx::query("UPDATE payments SET status = 'paid' WHERE id = $1").bind(id).execute(&app.pool).await.unwrap();
    let (status, err) = app.get(&format!("/v1/payments/{id}")).await;
    assert_error(status, &err, 500, "api_error", None, "unknown status");
    assert!(!err.to_string().contains("paid"), "a 5xx says nothing internal: {err}");
    let (status, _) = app.get("/v1/payments").await;
    assert_eq!(status, 500, "the list does not show the payment as pending either");
    // Put back, it reads again.
    sqlx::query("UPDATE payments SET status = 'pending' WHERE id = $1").bind(id).execute(&app.pool).await.unwrap();
    let (status, _) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(status, 200);
    app.stop().await;
}
