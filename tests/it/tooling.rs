//! Webhook tooling (contract §13) through the API with a real receiver:
//! attempts with answers, endpoint health and stats, `sequence`, test
//! sends and the test-mode fast-forward.

use std::time::Duration;

use payd::testing::KeyKind;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually, verify_webhook};

async fn delivery_of(app: &TestApp, endpoint: &str, event_type: &str) -> Value {
    eventually(&format!("a {event_type} delivery"), WAIT, || async {
        let (_, list) = app.get(&format!("/v1/webhook_endpoints/{endpoint}/deliveries?status=succeeded")).await;
        list["data"].as_array()?.iter().find(|d| d["event_type"] == event_type).cloned()
    })
    .await
}

#[tokio::test]
async fn each_attempt_of_a_delivery_keeps_the_receivers_answer() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(&[503]);
    receiver.body("thanks");
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 700).await;
    receiver.wait_for("payment.created", p["id"].as_str().unwrap()).await;
    let delivery = delivery_of(&app, &endpoint, "payment.created").await;
    let (status, attempts) =
        app.get(&format!("/v1/webhook_deliveries/{}/attempts", delivery["id"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{attempts}");
    let data = attempts["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{attempts}");
    assert_eq!(attempts["total_count"], 2);
    // Newest first: the success, then the 503.
    assert_eq!((data[0]["status"].as_str(), data[0]["status_code"].as_i64()), (Some("succeeded"), Some(200)));
    assert_eq!(data[0]["response_body"], "thanks");
    assert_eq!(data[0]["object"], "webhook_attempt");
    assert_eq!(data[0]["delivery_id"], delivery["id"]);
    assert!(data[0]["id"].as_str().unwrap().starts_with("wha_"));
    assert_eq!((data[1]["status"].as_str(), data[1]["status_code"].as_i64()), (Some("failed"), Some(503)));
    assert_eq!(data[1]["error"], "HTTP 503");
    // Another merchant sees none of it.
    let (_, other) = app.other_merchant().await;
    let path = format!("/v1/webhook_deliveries/{}/attempts", delivery["id"].as_str().unwrap());
    let (status, _) = app.call_as(&other, "GET", &path, None, &[]).await;
    assert_eq!(status, 404);

    let (status, stats) = app.get(&format!("/v1/webhook_endpoints/{endpoint}/stats")).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["object"], "webhook_endpoint_stats");
    assert_eq!(stats["window"], "24h");
    assert!(stats["succeeded"].as_i64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["failed"], 0);
    assert!(stats["latency_ms"]["p50"].as_i64().is_some() && stats["latency_ms"]["p99"].as_i64().is_some(), "{stats}");
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_says_when_and_why_it_was_disabled() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(410);
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let (_, fresh) = app.get(&format!("/v1/webhook_endpoints/{endpoint}")).await;
    assert_eq!((fresh["disabled_at"].clone(), fresh["disabled_reason"].clone()), (Value::Null, Value::Null));
    app.create_payment("pm_test_success", 100).await;
    let gone = eventually("the endpoint is disabled", WAIT, || async {
        let (_, e) = app.get(&format!("/v1/webhook_endpoints/{endpoint}")).await;
        (e["status"] == "disabled").then_some(e)
    })
    .await;
    assert_eq!(gone["disabled_reason"], "gone", "{gone}");
    assert!(gone["disabled_at"].is_string() && gone["failing_since"].is_string(), "{gone}");
    let path = format!("/v1/webhook_endpoints/{endpoint}");
    // The receiver is back: nothing disables the endpoint again by itself.
    receiver.always(200);
    let (_, enabled) = app.post(&path, json!({"status": "enabled"})).await;
    assert_eq!((enabled["disabled_reason"].clone(), enabled["failing_since"].clone()), (Value::Null, Value::Null));
    let (_, manual) = app.post(&path, json!({"status": "disabled"})).await;
    assert_eq!(manual["disabled_reason"], "manual", "{manual}");
    app.stop().await;
}

#[tokio::test]
async fn every_change_of_a_payment_raises_its_sequence_and_events_carry_it() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 900).await;
    let id = p["id"].as_str().unwrap();
    assert_eq!(p["sequence"], 1, "{p}");
    let paid = app.wait_status(id, "succeeded").await;
    let created = receiver.wait_for("payment.created", id).await.json();
    let succeeded = receiver.wait_for("payment.succeeded", id).await.json();
    assert_eq!(created["data"]["object"]["sequence"], 1);
    let at_success = succeeded["data"]["object"]["sequence"].as_i64().unwrap();
    assert!(at_success > 1, "{succeeded}");
    assert!(paid["sequence"].as_i64().unwrap() >= at_success);
    let (status, _) = app.post(&format!("/v1/payments/{id}/refund"), json!({"amount": 100})).await;
    assert_eq!(status, 200);
    let refunded = receiver.wait_for("payment.refunded", id).await.json();
    assert!(refunded["data"]["object"]["sequence"].as_i64().unwrap() > at_success, "{refunded}");
    app.stop().await;
}

#[tokio::test]
async fn a_test_send_is_signed_marked_and_answered_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = app.add_endpoint(&receiver.url).await;
    let path = format!("/v1/webhook_endpoints/{endpoint}/test");
    let (status, sent) = app.post(&path, json!({"type": "payment.failed"})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!((sent["delivered"].as_bool(), sent["status_code"].as_i64()), (Some(true), Some(200)), "{sent}");
    assert!(sent["duration_ms"].is_u64());
    let got = receiver.all().pop().expect("the test event arrived");
    assert!(verify_webhook(&secret, &got), "signed with the endpoint's secret");
    let event = got.json();
    assert_eq!((event["type"].as_str(), event["test"].as_bool()), (Some("payment.failed"), Some(true)), "{event}");
    assert_eq!(event["data"]["object"]["status"], "failed");
    assert_eq!(got.header("webhook-id"), event["id"].as_str().unwrap());
    receiver.always(503);
    let (_, sent) = app.post(&path, json!({})).await;
    assert_eq!((sent["delivered"].as_bool(), sent["status_code"].as_i64()), (Some(false), Some(503)), "{sent}");
    assert_eq!(receiver.all().pop().unwrap().json()["type"], "payment.succeeded");
    let (status, err) = app.post(&path, json!({"type": "payment.exploded"})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("type")), "{err}");
    // Nothing was stored: no event, no delivery.
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", &endpoint).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_test_payments_next_retry_can_be_made_due_now() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h,1h,1h")]).await;
    let p = app.create_payment("pm_test_flaky", 500).await;
    let id = p["id"].as_str().unwrap();
    let waiting = app.wait_payment(id, "a retry scheduled", |p| p["next_attempt_at"].is_string()).await;
    assert_eq!(waiting["status"], "pending");
    for attempts in [2, 3] {
        let (status, advanced) = app.post(&format!("/v1/test_helpers/payments/{id}/advance"), json!({})).await;
        assert_eq!(status, 200, "{advanced}");
        app.wait_payment(id, "the attempt ran", |p| p["attempt_count"].as_i64() >= Some(attempts)).await;
    }
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["attempt_count"], 3, "the flaky method succeeds on the third attempt");
    // Live mode has no test helpers.
    let live = payd::testing::add_key(&app.pool, Some(&app.merchant), KeyKind::Secret, true).await.unwrap();
    let (status, _) = app.call_as(&live, "POST", &format!("/v1/test_helpers/payments/{id}/advance"), None, &[]).await;
    assert_eq!(status, 404);
    app.stop().await;
}

fn events_of(list: &Value) -> Vec<(String, String)> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e["type"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn the_events_list_is_a_feed_with_types_times_delivery_state_and_stable_cursors() {
    let app = TestApp::spawn().await;
    let failing = Receiver::start().await;
    failing.always(500);
    app.add_endpoint(&failing.url).await;
    let before = crate::common::now_rfc3339();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let p = app.create_payment("pm_test_success", 300).await;
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_status(id, "succeeded").await;
    }
    let (status, both) = app.get("/v1/events?types[]=payment.created&types[]=payment.succeeded&limit=100").await;
    assert_eq!(status, 200, "{both}");
    let both = events_of(&both);
    assert_eq!(both.len(), 6, "{both:?}");
    let (_, created) = app.get("/v1/events?types=payment.created&limit=100").await;
    assert!(events_of(&created).iter().all(|(_, t)| t == "payment.created"));
    let (_, none) = app.get(&format!("/v1/events?created[lt]={}", urlencode(&before))).await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0, "{none}");
    let (_, since) = app.get(&format!("/v1/events?created[gte]={}&limit=100", urlencode(&before))).await;
    assert_eq!(since["data"].as_array().unwrap().len(), 6);
    // Every delivery fails at this endpoint: all six are undelivered.
    let (_, undelivered) = app.get("/v1/events?delivery_success=false&limit=100").await;
    assert_eq!(undelivered["data"].as_array().unwrap().len(), 6, "{undelivered}");
    let (_, delivered) = app.get("/v1/events?delivery_success=true").await;
    assert_eq!(delivered["data"].as_array().unwrap().len(), 0);
    // Cursor pages of 2, newest first, stable while new events arrive.
    let (_, first) = app.get("/v1/events?types[]=payment.created&types[]=payment.succeeded&limit=2").await;
    assert_eq!(first["has_more"], true);
    let first = events_of(&first);
    assert_eq!(first, both[..2].to_vec());
    app.create_payment("pm_test_success", 300).await;
    let (_, second) = app
        .get(&format!(
            "/v1/events?types[]=payment.created&types[]=payment.succeeded&limit=2&starting_after={}",
            first[1].0
        ))
        .await;
    assert_eq!(events_of(&second), both[2..4].to_vec(), "new events do not shift the pages");
    let (_, back) = app
        .get(&format!(
            "/v1/events?types[]=payment.created&types[]=payment.succeeded&limit=2&ending_before={}",
            both[2].0
        ))
        .await;
    assert_eq!(events_of(&back), both[..2].to_vec());
    let (status, err) = app.get("/v1/events?type=payment.created&type=payment.failed").await;
    assert_eq!(status, 400, "a repeated scalar parameter is refused: {err}");
    let (status, _) = app.get(&format!("/v1/events?starting_after={}&offset=2", first[0].0)).await;
    assert_eq!(status, 400);
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn failed_attempts_disabled_endpoints_and_exhausted_deliveries_are_events() {
    let app = TestApp::spawn_with(
        &[],
        &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "200ms,200ms"), ("PAYD_WEBHOOKS__RETRY_SCHEDULE", "100ms")],
    )
    .await;
    let watcher = Receiver::start().await;
    app.add_endpoint(&watcher.url).await;
    // An attempt that fails and is retried, then one that fails for good.
    let p = app.create_payment("pm_test_flaky", 400).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let retried = watcher.wait_for("payment.attempt_failed", id).await.json();
    let attempt = &retried["data"]["attempt"];
    assert_eq!(
        (attempt["will_retry"].as_bool(), attempt["error_code"].as_str()),
        (Some(true), Some("processing_error"))
    );
    assert!(attempt["next_attempt_at"].is_string() && attempt["id"].as_str().unwrap().starts_with("att_"), "{retried}");
    assert_eq!(retried["data"]["object"]["id"], id);
    let d = app.create_payment("pm_test_decline", 400).await;
    let did = d["id"].as_str().unwrap();
    let final_failure = watcher.wait_for("payment.attempt_failed", did).await.json();
    assert_eq!(final_failure["data"]["attempt"]["will_retry"], false, "{final_failure}");
    assert_eq!(final_failure["data"]["attempt"]["error_code"], "card_declined");
    watcher.wait_for("payment.failed", did).await;

    // One endpoint gives up on a delivery, another is gone: the watcher hears of both.
    let failing = Receiver::start().await;
    failing.always(500);
    let (failing_id, _) = app.add_endpoint(&failing.url).await;
    let gone = Receiver::start().await;
    gone.always(410);
    let (gone_id, _) = app.add_endpoint(&gone.url).await;
    app.create_payment("pm_test_success", 100).await;
    let disabled = seen(&watcher, "webhook_endpoint.disabled", &gone_id).await;
    assert_eq!(disabled["data"]["object"]["disabled_reason"], "gone", "{disabled}");
    let exhausted = seen(&watcher, "webhook_delivery.exhausted", &failing_id).await;
    assert_eq!(exhausted["data"]["object"]["status"], "failed", "{exhausted}");
    // Neither event goes to the endpoint it is about.
    assert!(gone.all().iter().all(|r| r.json()["type"] != "webhook_endpoint.disabled"));
    assert!(failing.all().iter().all(|r| r.json()["type"] != "webhook_delivery.exhausted"));
    let disabled_events = app
        .count(
            "SELECT count(*) FROM events WHERE type = 'webhook_endpoint.disabled' AND data->'object'->>'id' = $1",
            &gone_id,
        )
        .await;
    assert_eq!(disabled_events, 1, "told once");
    app.stop().await;
}

/// The first event of `kind` the receiver got about `endpoint`.
async fn seen(receiver: &Receiver, kind: &str, endpoint: &str) -> Value {
    eventually(&format!("{kind} for {endpoint}"), WAIT, || async {
        receiver.all().into_iter().map(|r| r.json()).find(|e| {
            e["type"] == kind
                && (e["data"]["object"]["id"] == endpoint || e["data"]["object"]["endpoint_id"] == endpoint)
        })
    })
    .await
}

#[tokio::test]
async fn events_can_be_expunged_and_the_document_describes_them_as_webhooks() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 800).await;
    let (_, list) = app.get(&format!("/v1/events?payment_id={}", p["id"].as_str().unwrap())).await;
    let event = list["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, expunged) = app.post(&format!("/v1/events/{event}/expunge"), json!({})).await;
    assert_eq!(status, 200, "{expunged}");
    assert_eq!((expunged["data"].clone(), expunged["expunged"].as_bool()), (json!({}), Some(true)), "{expunged}");
    let (_, again) = app.get(&format!("/v1/events/{event}")).await;
    assert_eq!(again["data"], json!({}));
    let stored: Value =
        sqlx::query_scalar("SELECT data FROM events WHERE id = $1").bind(&event).fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, json!({}), "nothing of the payment is left in the row");
    let (_, other) = app.other_merchant().await;
    let (status, _) = app.call_as(&other, "POST", &format!("/v1/events/{event}/expunge"), None, &[]).await;
    assert_eq!(status, 404);

    let doc: Value = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let hooks = doc["webhooks"].as_object().expect("OpenAPI 3.1 webhooks");
    for kind in
        ["payment.succeeded", "payment.attempt_failed", "webhook_endpoint.disabled", "webhook_delivery.exhausted"]
    {
        let op = &hooks[kind]["post"];
        assert_eq!(op["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Event");
        let headers: Vec<&str> =
            op["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(headers, ["webhook-id", "webhook-timestamp", "webhook-signature"]);
    }
    app.stop().await;
}

/// Seconds between an endpoint's first and last delivery, and their number.
async fn delivery_span(app: &TestApp, endpoint: &str) -> (f64, i64) {
    sqlx::query_as(
        "SELECT COALESCE(extract(epoch FROM max(delivered_at) - min(delivered_at))::float8, 0), count(*)
         FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'succeeded'",
    )
    .bind(endpoint)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_endpoints_throttle_holds_across_dispatchers_and_slows_no_other() {
    let app = TestApp::spawn().await;
    let second = app.start_more(&[payd::app::Role::Dispatcher]).await;
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    let body = json!({"url": slow.url, "enabled_events": ["payment.created"], "rate_limit": 5});
    let (status, throttled) = app.post("/v1/webhook_endpoints", body).await;
    assert_eq!((status, throttled["rate_limit"].as_i64()), (201, Some(5)), "{throttled}");
    let throttled = throttled["id"].as_str().unwrap().to_owned();
    let (status, _) =
        app.post("/v1/webhook_endpoints", json!({"url": fast.url, "enabled_events": ["payment.created"]})).await;
    assert_eq!(status, 201);
    let (_, list) = app.get("/v1/webhook_endpoints").await;
    let unthrottled = list["data"].as_array().unwrap().iter().find(|e| e["id"] != throttled.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..16 {
        app.create_payment("pm_test_success", 100).await;
    }
    eventually("16 deliveries to the throttled endpoint", Duration::from_secs(30), || async {
        (delivery_span(&app, &throttled).await.1 == 16).then_some(())
    })
    .await;
    let (span, _) = delivery_span(&app, &throttled).await;
    // 16 sends at 5/s take at least 15 intervals of 0.2 s (10 % slack).
    assert!(span >= 15.0 / 5.0 * 0.9, "16 deliveries in {span:.2}s at 5/s");
    // A loose bound: deferred sends wait with jitter, and CI machines are busy.
    assert!(span <= 15.0 / 5.0 * 4.0, "and not far slower: {span:.2}s");
    let (fast_span, n) = delivery_span(&app, &unthrottled).await;
    assert_eq!(n, 16);
    assert!(fast_span < span / 2.0, "the other endpoint is not held back: {fast_span:.2}s against {span:.2}s");
    let (status, e) = app.post(&format!("/v1/webhook_endpoints/{throttled}"), json!({"rate_limit": null})).await;
    assert_eq!((status, e["rate_limit"].clone()), (200, Value::Null), "{e}");
    let (status, _) = app.post(&format!("/v1/webhook_endpoints/{throttled}"), json!({"rate_limit": 0})).await;
    assert_eq!(status, 400);
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn old_events_and_attempts_are_purged_but_never_an_event_still_being_delivered() {
    let app = TestApp::spawn().await;
    let ok = Receiver::start().await;
    app.add_endpoint(&ok.url).await;
    let old = app.create_payment("pm_test_success", 100).await;
    let recent = app.create_payment("pm_test_success", 100).await;
    for p in [&old, &recent] {
        let id = p["id"].as_str().unwrap();
        app.wait_status(id, "succeeded").await;
        ok.wait_for("payment.succeeded", id).await;
    }
    eventually("every delivery recorded", WAIT, || async {
        (app.count("SELECT count(*) FROM webhook_deliveries WHERE status <> $1", "succeeded").await == 0).then_some(())
    })
    .await;
    let old_id = old["id"].as_str().unwrap();
    // The old payment's events and sends are 40 days old; one more old event
    // still has a pending delivery.
    sqlx::query("UPDATE events SET created_at = now() - interval '40 days' WHERE payment_id = $1")
        .bind(old_id)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE webhook_delivery_attempts a SET attempted_at = now() - interval '40 days'
         FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE a.delivery_id = d.id AND e.payment_id = $1",
    )
    .bind(old_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let pending: String = sqlx::query_scalar(
        "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now() + interval '1 day'
         FROM events e WHERE e.id = d.event_id AND e.payment_id = $1 AND e.type = 'payment.created' RETURNING e.id",
    )
    .bind(old_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let settings = payd::config::RetentionSettings {
        events: Duration::from_secs(30 * 86_400),
        webhook_attempts: Duration::from_secs(30 * 86_400),
    };
    let purged = payd::testing::purge_old(&app.pool, &settings).await.unwrap();
    assert!(purged >= 2, "{purged}");
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM events WHERE payment_id = $1")
        .bind(old_id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, [pending], "only the event still being delivered stays");
    let recent_events =
        app.count("SELECT count(*) FROM events WHERE payment_id = $1", recent["id"].as_str().unwrap()).await;
    assert_eq!(recent_events, 2, "recent events are kept");
    let old_attempts = app.count("SELECT count(*) FROM webhook_delivery_attempts WHERE attempted_at < now() - interval '30 days' AND $1 <> ''", "x").await;
    assert_eq!(old_attempts, 0);
    assert!(
        app.count("SELECT count(*) FROM webhook_delivery_attempts WHERE $1 <> ''", "x").await >= 2,
        "recent attempts are kept"
    );
    app.stop().await;
}
