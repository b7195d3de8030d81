//! Metadata updates, tags, the audit log, external keys, references,
//! filters and search.

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, run_json};

fn ids(list: &Value) -> Vec<&str> {
    list["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn metadata_merges_null_removes_and_the_audit_log_names_every_actor() {
    let app = TestApp::spawn().await;
    let (_, p) = app
        .post(
            "/v1/payments",
            json!({"amount": 700, "currency": "usd", "payment_method_id": "pm_test_success",
                   "metadata": {"order_id": "12345", "channel": "web"}, "description": "first"}),
        )
        .await;
    let id = p["id"].as_str().unwrap();
    assert_eq!(p["currency"], "USD");
    app.wait_status(id, "succeeded").await;
    let path = format!("/v1/payments/{id}");

    let (status, p) =
        app.post(&path, json!({"metadata": {"channel": null, "gift": "yes"}, "description": "second"})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["metadata"], json!({"order_id": "12345", "gift": "yes"}));
    assert_eq!(p["description"], "second");
    let (_, p) = app.post(&path, json!({"metadata": {"note": "kept"}})).await;
    assert_eq!(p["description"], "second", "absent fields are unchanged");
    assert_eq!(p["metadata"]["note"], "kept");
    let (_, p) = app.post(&path, json!({"description": null})).await;
    assert_eq!(p["description"], Value::Null);

    for bad in
        [json!({"metadata": {"k": 5}}), json!({"metadata": "x"}), json!({"amount": 5}), json!({"metadata": {"": "v"}})]
    {
        let (status, err) = app.post(&path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let many: serde_json::Map<String, Value> = (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, err) = app.post(&path, json!({"metadata": many})).await;
    assert_eq!(status, 400, "51 keys after the merge: {err}");
    assert_eq!(err["error"]["param"], "metadata");

    // Tags: added once each, removed one by one, 404 for one that is not there.
    let (status, p) = app.post(&format!("{path}/tags"), json!({"tags": ["vip", "review", "vip"]})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["tags"], json!(["vip", "review"]));
    let (_, p) = app.post(&format!("{path}/tags"), json!({"tags": ["review", "gift"]})).await;
    assert_eq!(p["tags"], json!(["vip", "review", "gift"]));
    let (status, p) = app.call("DELETE", &format!("{path}/tags/review"), None).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["tags"], json!(["vip", "gift"]));
    let (status, err) = app.call("DELETE", &format!("{path}/tags/review"), None).await;
    assert_eq!(status, 404, "{err}");
    for bad in [json!({"tags": "vip"}), json!({"tags": [""]}), json!({}), json!({"tags": [1]})] {
        let (status, err) = app.post(&format!("{path}/tags"), bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }

    // The audit log: oldest first, the key for merchant changes, system for the worker's.
    let key_id: String = sqlx::query_scalar("SELECT id FROM api_keys WHERE merchant_id = $1 AND kind = 'secret'")
        .bind(&app.merchant)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (status, log) = app.get(&format!("{path}/audit_log?limit=100")).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let summary: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert_eq!(
        summary,
        [
            (key_id.as_str(), "payment.create"),
            ("system", "provider.outcome"),
            (key_id.as_str(), "payment.update"),
            (key_id.as_str(), "payment.update"),
            (key_id.as_str(), "payment.update"),
            (key_id.as_str(), "payment.tag"),
            (key_id.as_str(), "payment.tag"),
            (key_id.as_str(), "payment.untag"),
        ]
    );
    assert_eq!(entries[0]["changes"]["status"], json!({"from": null, "to": "pending"}));
    assert_eq!(entries[1]["changes"]["status"], json!({"from": "pending", "to": "succeeded"}));
    assert_eq!(entries[1]["changes"]["amount_captured"], json!({"from": 0, "to": 700}));
    assert_eq!(entries[2]["changes"]["metadata"]["to"], json!({"order_id": "12345", "gift": "yes"}));
    assert!(entries.iter().all(|e| e["at"].as_str().unwrap().ends_with('Z')));
    assert_eq!(log["total_count"], 8);
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["aud_1", "aud_2", "aud_3", "aud_4", "aud_5", "aud_6", "aud_7", "aud_8"]);
    // Cursor paging: forward from an entry, back from one, and the ends.
    let page = |q: &'static str| {
        let app = &app;
        let path = path.clone();
        async move {
            let (status, body) = app.get(&format!("{path}/audit_log?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            let ids: Vec<String> =
                body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
            (ids, body["has_more"].as_bool().unwrap())
        }
    };
    assert_eq!(
        page("limit=3&starting_after=aud_2").await,
        (vec!["aud_3".into(), "aud_4".into(), "aud_5".into()], true)
    );
    assert_eq!(page("limit=3&starting_after=aud_6").await, (vec!["aud_7".into(), "aud_8".into()], false));
    assert_eq!(page("limit=3&starting_after=aud_8").await, (vec![], false));
    assert_eq!(page("limit=3&ending_before=aud_6").await, (vec!["aud_3".into(), "aud_4".into(), "aud_5".into()], true));
    assert_eq!(page("limit=3&ending_before=aud_3").await, (vec!["aud_1".into(), "aud_2".into()], false));
    assert_eq!(page("ending_before=aud_1").await, (vec![], false));
    for bad in ["starting_after=aud_9", "ending_before=aud_0", "starting_after=pay_1", "starting_after=aud_1&offset=1"]
    {
        let (status, body) = app.get(&format!("{path}/audit_log?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let (other, other_key) = app.other_merchant().await;
    let _ = other;
    let (status, _) = app.call_as(&other_key, "GET", &format!("{path}/audit_log"), None, &[]).await;
    assert_eq!(status, 404, "another merchant's payment");
    let (status, _) = app.call_as(&other_key, "POST", &path, Some(json!({"description": "x"})), &[]).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn external_keys_references_filters_and_search() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let make = |body: Value| {
        let mut b = json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success"});
        b.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        b
    };
    let (status, a) = app
        .post("/v1/payments", make(json!({"external_key": "ext-1", "reference": "order-1", "customer_id": "cust_a", "description": "Blue Widget"})))
        .await;
    assert_eq!(status, 201, "{a}");
    let a_id = a["id"].as_str().unwrap();
    assert_eq!(a["external_key"], "ext-1");

    let (status, err) = app.post("/v1/payments", make(json!({"external_key": "ext-1"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("external_key_in_use")), "{err}");
    assert_eq!(err["error"]["param"], "external_key");
    let (status, err) = app.post("/v1/payments", make(json!({"external_key": "x".repeat(65)}))).await;
    assert_eq!(status, 400, "{err}");

    let (status, err) = app.post("/v1/payments", make(json!({"reference": "order-1"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("pending_payment_exists")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains(a_id), "names the pending payment: {err}");

    let (_, b) = app.post("/v1/payments", make(json!({"external_key": "ext-2", "reference": "order-2", "customer_id": "cust_b", "description": "red gadget"}))).await;
    let b_id = b["id"].as_str().unwrap();
    // Another merchant may reuse the same external key.
    let (_, other_key) = app.other_merchant().await;
    let (status, _) =
        app.call_as(&other_key, "POST", "/v1/payments", Some(make(json!({"external_key": "ext-1"}))), &[]).await;
    assert_eq!(status, 201);

    let (_, list) = app.get("/v1/payments?external_key=ext-1").await;
    assert_eq!(ids(&list), [a_id]);
    let (_, list) = app.get("/v1/payments?customer_id=cust_b").await;
    assert_eq!(ids(&list), [b_id]);
    let (_, list) = app.get("/v1/payments?reference=order-1").await;
    assert_eq!(ids(&list), [a_id]);

    for (q, want) in [
        ("widget", vec![a_id]),
        ("CUST_", vec![b_id, a_id]),
        ("order-2", vec![b_id]),
        (a_id, vec![a_id]),
        ("ext-", vec![b_id, a_id]),
        ("%", vec![]),
        ("nothing-like-this", vec![]),
    ] {
        let (status, list) = app.get(&format!("/v1/payments/search?query={}", urlencode(q))).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(ids(&list), want, "search {q}");
        assert_eq!(list["total_count"], want.len());
    }
    let (status, err) = app.get("/v1/payments/search").await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("query")), "{err}");
    let (_, list) = app.get("/v1/payments/search?query=ext-&limit=1").await;
    assert_eq!((list["has_more"].as_bool(), list["total_count"].as_i64()), (Some(true), Some(2)));
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn ten_concurrent_creates_for_one_reference_make_one_pending_payment() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let calls = (0..10).map(|i| {
        let app = &app;
        async move {
            app.post("/v1/payments", json!({"amount": 100 + i, "currency": "USD", "payment_method_id": "pm_test_success", "reference": "policy-7"}))
                .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let created: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let winner = created[0]["id"].as_str().unwrap();
    for (status, body) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 422, "{body}");
        assert_eq!(body["error"]["code"], "pending_payment_exists");
        assert!(body["error"]["message"].as_str().unwrap().contains(winner), "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE reference = $1", "policy-7").await, 1);
    // Once it is no longer pending, the reference is free again.
    let (status, _) = app.post(&format!("/v1/payments/{winner}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post(
            "/v1/payments",
            json!({"amount": 1, "currency": "USD", "payment_method_id": "pm_test_success", "reference": "policy-7"}),
        )
        .await;
    assert_eq!(status, 201);
    app.stop().await;
}

#[tokio::test]
async fn keys_publishable_live_and_operator() {
    // A gateway for live mode; no worker runs, so it is never called.
    let app = TestApp::spawn_with(
        &[Role::Api],
        &[("PAYD_PROVIDERS__ACME__BASE_URL", "http://127.0.0.1:9"), ("PAYD_PROVIDERS__ACME__SECRET", "unused")],
    )
    .await;
    let m = run_json(&app, &["keys", "create", "--merchant", app.merchant.as_str()]);
    let pk = m["publishable_key"].as_str().unwrap().to_owned();
    let (status, p) = app
        .call_as(
            &pk,
            "POST",
            "/v1/payments",
            Some(json!({"amount": 100, "currency": "USD", "payment_method_id": "pm_test_success"})),
            &[],
        )
        .await;
    assert_eq!(status, 201, "publishable keys create payments: {p}");
    let id = p["id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/v1/payments/{id}")),
        ("GET", "/v1/payments".to_owned()),
        ("POST", format!("/v1/payments/{id}/cancel")),
        ("POST", format!("/v1/payments/{id}/capture")),
        ("GET", format!("/v1/payments/{id}/transactions")),
        ("GET", "/v1/payment_methods".to_owned()),
        ("GET", "/v1/webhook_endpoints".to_owned()),
        ("GET", "/v1/attempts".to_owned()),
        ("GET", "/v1/events".to_owned()),
    ] {
        let (status, err) =
            app.call_as(&pk, method, &path, if method == "POST" { Some(json!({})) } else { None }, &[]).await;
        assert_eq!(status, 403, "{method} {path}: {err}");
        assert_eq!(err["error"]["type"], "permission_error");
    }

    // Live and test objects never mix.
    let live = run_json(&app, &["keys", "create", "--merchant", app.merchant.as_str(), "--live"]);
    let sk_live = live["secret_key"].as_str().unwrap().to_owned();
    let (status, _) = app.call_as(&sk_live, "GET", &format!("/v1/payments/{id}"), None, &[]).await;
    assert_eq!(status, 404, "a test payment is invisible to a live key");
    let (status, err) = app
        .call_as(
            &sk_live,
            "POST",
            "/v1/payment_methods",
            Some(json!({"provider": "sandbox", "token": "tok_success"})),
            &[],
        )
        .await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("provider")),
        "the sandbox is test mode only: {err}"
    );
    let (status, pm) = app
        .call_as(&sk_live, "POST", "/v1/payment_methods", Some(json!({"provider": "acme", "token": "tok_live"})), &[])
        .await;
    assert_eq!((status, pm["livemode"].as_bool()), (201, Some(true)), "{pm}");
    let live_pay = json!({"amount": 100, "currency": "USD", "payment_method_id": pm["id"]});
    let (status, live_p) = app.call_as(&sk_live, "POST", "/v1/payments", Some(live_pay.clone()), &[]).await;
    assert_eq!((status, live_p["livemode"].as_bool()), (201, Some(true)), "{live_p}");
    let live_id = live_p["id"].as_str().unwrap();
    let (status, _) = app.get(&format!("/v1/payments/{live_id}")).await;
    assert_eq!(status, 404, "a live payment is invisible to a test key");
    let (status, err) = app.post("/v1/payments", live_pay).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (404, Some("payment_method_id")),
        "a live method in test mode: {err}"
    );
    let (_, live_list) = app.call_as(&sk_live, "GET", "/v1/payments", None, &[]).await;
    assert_eq!(ids(&live_list), [live_id]);
    let (_, test_list) = app.get("/v1/payments").await;
    assert_eq!(ids(&test_list), [id]);

    // Operators read every merchant's payments and their history, change none.
    let ops = run_json(&app, &["keys", "create", "--ops"]);
    let ops = ops["secret_key"].as_str().unwrap().to_owned();
    let (_, other_key) = app.other_merchant().await;
    let (_, theirs) = app
        .call_as(
            &other_key,
            "POST",
            "/v1/payments",
            Some(json!({"amount": 5, "currency": "USD", "payment_method_id": "pm_test_success"})),
            &[],
        )
        .await;
    let theirs = theirs["id"].as_str().unwrap();
    for pid in [id, theirs] {
        for suffix in ["", "/transactions", "/attempts", "/audit_log"] {
            let (status, body) = app.call_as(&ops, "GET", &format!("/v1/payments/{pid}{suffix}"), None, &[]).await;
            assert_eq!(status, 200, "{suffix}: {body}");
        }
    }
    let (_, all) = app.call_as(&ops, "GET", "/v1/payments", None, &[]).await;
    assert_eq!(all["total_count"], 3, "both merchants, both modes: {all}");
    let (_, mine) = app.call_as(&ops, "GET", &format!("/v1/payments?merchant_id={}", app.merchant), None, &[]).await;
    assert_eq!(ids(&mine), [live_id, id]);
    let (_, found) = app.call_as(&ops, "GET", &format!("/v1/payments/search?query={theirs}"), None, &[]).await;
    assert_eq!(ids(&found), [theirs]);
    let (status, _) = app.get(&format!("/v1/payments?merchant_id={}", app.merchant)).await;
    assert_eq!(status, 403, "merchant_id is for operators");
    for (method, path) in [
        ("POST", format!("/v1/payments/{id}/cancel")),
        ("POST", format!("/v1/payments/{id}")),
        ("POST", "/v1/payment_methods".to_owned()),
    ] {
        let (status, _) = app.call_as(&ops, method, &path, Some(json!({})), &[]).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    app.stop().await;
}
