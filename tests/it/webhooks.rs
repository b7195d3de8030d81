//! The webhook dispatcher: endpoint management, secret rotation, retries,
//! Retry-After, redirects, 410, auto-disable, the delivery log and replay,
//! bounded concurrency, and a dispatcher killed between send and record.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually, payd, verify_signature, verify_webhook, wait_exit};

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let (status, list) = app.get(&format!("/v1/webhook_endpoints/{endpoint}/deliveries?limit=100")).await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

async fn wait_delivery(app: &TestApp, endpoint: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(what, WAIT, || async { deliveries(app, endpoint).await.into_iter().find(|d| done(d)) }).await
}

async fn endpoint_status(app: &TestApp, endpoint: &str) -> String {
    let (_, e) = app.get(&format!("/v1/webhook_endpoints/{endpoint}")).await;
    e["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn endpoints_are_updated_and_only_enabled_subscribed_ones_get_events() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (status, ep) = app
        .post(
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payment.succeeded"], "description": "orders"}),
        )
        .await;
    assert_eq!(status, 201);
    let id = ep["id"].as_str().unwrap();
    let path = format!("/v1/webhook_endpoints/{id}");

    let (status, updated) =
        app.post(&path, json!({"enabled_events": ["payment.failed"], "description": "failures"})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["enabled_events"], json!(["payment.failed"]));
    assert_eq!(updated["description"], "failures");
    assert!(updated.get("secret").is_none());
    for (body, param) in [
        (json!({"status": "paused"}), "status"),
        (json!({"secret": "x"}), "secret"),
        (json!({"enabled_events": ["nope"]}), "enabled_events"),
    ] {
        let (status, err) = app.post(&path, body).await;
        assert_eq!((status, err["error"]["param"].as_str()), (400, Some(param)), "{err}");
    }

    let (_, disabled) = app.post(&path, json!({"status": "disabled"})).await;
    assert_eq!(disabled["status"], "disabled");
    let p = app.create_payment("pm_test_decline", 100).await;
    app.wait_status(p["id"].as_str().unwrap(), "failed").await;
    assert!(deliveries(&app, id).await.is_empty(), "nothing is queued for a disabled endpoint");

    let (_, enabled) = app.post(&path, json!({"status": "enabled"})).await;
    assert_eq!(enabled["status"], "enabled");
    let p = app.create_payment("pm_test_decline", 100).await;
    let pid = p["id"].as_str().unwrap();
    receiver.wait_for("payment.failed", pid).await;
    let ok = app.create_payment("pm_test_success", 100).await;
    app.wait_status(ok["id"].as_str().unwrap(), "succeeded").await;
    assert!(receiver.all().iter().all(|r| r.json()["type"] == "payment.failed"));
    assert_eq!(deliveries(&app, id).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_new_one_until_it_expires() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, old) = app.add_endpoint(&receiver.url).await;
    let (status, rotated) =
        app.post(&format!("/v1/webhook_endpoints/{id}/rotate_secret"), json!({"expire_previous_in": 3600})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let (_, shown) = app.get(&format!("/v1/webhook_endpoints/{id}")).await;
    assert!(shown.get("secret").is_none());

    let p = app.create_payment("pm_test_success", 100).await;
    let hook = receiver.wait_for("payment.created", p["id"].as_str().unwrap()).await;
    let sigs: Vec<&str> = hook.header("webhook-signature").split(' ').collect();
    assert_eq!(sigs.len(), 2, "both signatures while the old secret is valid");
    assert!(verify_signature(&new, &hook, sigs[0]), "the new secret's signature comes first");
    assert!(verify_signature(&old, &hook, sigs[1]));

    let (_, again) =
        app.post(&format!("/v1/webhook_endpoints/{id}/rotate_secret"), json!({"expire_previous_in": 0})).await;
    let newest = again["secret"].as_str().unwrap().to_owned();
    let p = app.create_payment("pm_test_success", 100).await;
    let hook = receiver.wait_for("payment.created", p["id"].as_str().unwrap()).await;
    assert_eq!(hook.header("webhook-signature").split(' ').count(), 1, "the expired secret no longer signs");
    assert!(verify_webhook(&newest, &hook));
    assert!(!verify_webhook(&new, &hook));
    let (status, err) =
        app.post(&format!("/v1/webhook_endpoints/{id}/rotate_secret"), json!({"expire_previous_in": -1})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("expire_previous_in")));
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_redirects_are_not_followed() {
    let app = TestApp::spawn().await;
    let gone = Receiver::start().await;
    gone.always(410);
    let (gone_id, _) = app.add_endpoint(&gone.url).await;
    let target = Receiver::start().await;
    let redirecting = Receiver::start().await;
    redirecting.always(302);
    redirecting.header("location", &target.url);
    let (redirect_id, _) = app.add_endpoint(&redirecting.url).await;

    let p = app.create_payment("pm_test_decline", 100).await;
    app.wait_status(p["id"].as_str().unwrap(), "failed").await;
    wait_delivery(&app, &gone_id, "a failed delivery to the 410 endpoint", |d| d["status"] == "failed").await;
    assert_eq!(endpoint_status(&app, &gone_id).await, "disabled");
    let d = wait_delivery(&app, &redirect_id, "a refused send to the redirecting endpoint", |d| {
        d["last_status_code"] == 302
    })
    .await;
    assert_ne!(d["status"], "succeeded", "a 3xx is not a success");
    assert!(target.all().is_empty(), "the redirect was not followed");
    assert_eq!(endpoint_status(&app, &redirect_id).await, "enabled");
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_twice_the_step() {
    let app = TestApp::spawn_with(&[], &[("PAYD_WEBHOOKS__RETRY_SCHEDULE", "1s,1s")]).await;
    let receiver = Receiver::start().await;
    receiver.always(503);
    receiver.header("retry-after", "2");
    let (id, _) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_decline", 100).await;
    app.wait_status(p["id"].as_str().unwrap(), "failed").await;
    wait_delivery(&app, &id, "the first refused send", |d| d["attempts"] == 1 && d["last_status_code"] == 503).await;
    let gap: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM d.next_attempt_at - a.attempted_at)::float8 FROM webhook_deliveries d
         JOIN webhook_delivery_attempts a ON a.delivery_id = d.id WHERE d.endpoint_id = $1 ORDER BY a.id LIMIT 1",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((1.8..=2.3).contains(&gap), "Retry-After: 2 was honoured (gap {gap})");
    app.stop().await;
}

#[tokio::test]
async fn every_send_is_logged_and_a_delivery_can_be_sent_again() {
    let app = TestApp::spawn_with(&[], &[("PAYD_WEBHOOKS__RETRY_SCHEDULE", "300ms")]).await;
    let receiver = Receiver::start().await;
    receiver.always(500);
    receiver.body(&"x".repeat(5000));
    let (ep, secret) = app
        .post("/v1/webhook_endpoints", json!({"url": receiver.url, "enabled_events": ["payment.failed"]}))
        .await
        .1
        .as_object()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o["secret"].as_str().unwrap().to_owned()))
        .unwrap();
    let p = app.create_payment("pm_test_decline", 100).await;
    let failed = wait_delivery(&app, &ep, "the delivery to give up", |d| d["status"] == "failed").await;
    assert_eq!(failed["attempts"], 2, "one send and the schedule's one retry");
    assert_eq!(failed["last_status_code"], 500);
    assert_eq!(failed["event_type"], "payment.failed");
    let log: Vec<(Option<i32>, i32, Option<String>)> = sqlx::query_as(
        "SELECT status_code, duration_ms, response_body FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(failed["id"].as_str().unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter().all(|(code, ms, body)| *code == Some(500)
            && (0..3_000).contains(ms)
            && body.as_ref().unwrap().len() == 1024)
    );

    receiver.always(200);
    let d = failed["id"].as_str().unwrap();
    let (status, retried) = app.post(&format!("/v1/webhook_deliveries/{d}/retry"), json!({})).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["status"], "pending");
    let ok = wait_delivery(&app, &ep, "the replayed delivery", |d| d["status"] == "succeeded").await;
    assert_eq!(ok["id"], d);
    let sends = receiver.all();
    assert_eq!(sends.len(), 3);
    assert!(sends.iter().all(|r| verify_webhook(&secret, r) && r.json()["data"]["object"]["id"] == p["id"]));
    assert_eq!(sends.iter().map(|r| r.header("webhook-id")).collect::<std::collections::HashSet<_>>().len(), 1);

    let (other_id, other_key) = app.other_merchant().await;
    let _ = other_id;
    let (status, _) =
        app.call_as(&other_key, "POST", &format!("/v1/webhook_deliveries/{d}/retry"), Some(json!({})), &[]).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_longer_than_disable_after_is_disabled() {
    let app = TestApp::spawn_with(
        &[],
        &[
            ("PAYD_WEBHOOKS__RETRY_SCHEDULE", "400ms,400ms,400ms,400ms,400ms,400ms"),
            ("PAYD_WEBHOOKS__DISABLE_AFTER", "1s"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.always(500);
    let (id, _) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_decline", 100).await;
    app.wait_status(p["id"].as_str().unwrap(), "failed").await;
    eventually("the endpoint to be disabled", WAIT, || async {
        (endpoint_status(&app, &id).await == "disabled").then_some(())
    })
    .await;
    // Once disabled, new events are not queued for it.
    let before = deliveries(&app, &id).await.len();
    let q = app.create_payment("pm_test_decline", 100).await;
    app.wait_status(q["id"].as_str().unwrap(), "failed").await;
    assert_eq!(deliveries(&app, &id).await.len(), before);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_the_others() {
    let app = TestApp::spawn_with(
        &[],
        &[
            ("PAYD_WEBHOOKS__CONCURRENCY", "4"),
            ("PAYD_WEBHOOKS__ENDPOINT_CONCURRENCY", "2"),
            ("PAYD_WEBHOOKS__ENDPOINT_CONCURRENCY_MAX", "2"),
            ("PAYD_WEBHOOKS__TIMEOUT", "10s"),
        ],
    )
    .await;
    let slow = Receiver::start().await;
    slow.delay(Duration::from_secs(3));
    let fast = Receiver::start().await;
    app.add_endpoint(&slow.url).await;
    app.add_endpoint(&fast.url).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(app.create_payment("pm_test_decline", 100).await["id"].as_str().unwrap().to_owned());
    }
    // 16 events each; the slow endpoint would need 24 s for its share alone.
    eventually("the fast endpoint to get all 16 events", WAIT, || async { (fast.all().len() >= 16).then_some(()) })
        .await;
    assert!(started.elapsed() < Duration::from_secs(6), "the fast endpoint was held up: {:?}", started.elapsed());
    assert!(slow.all().len() < 16, "the slow endpoint is still busy");
    assert!(slow.all().len() >= 2, "the slow endpoint got its share of the slots meanwhile");
    assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 2, "endpoint_concurrency sends to one endpoint, no more");
    app.stop().await;
}

#[tokio::test]
async fn a_dispatcher_killed_between_send_and_record_sends_again() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Worker], &[("PAYD_WEBHOOKS__TIMEOUT", "1s")]).await;
    let receiver = Receiver::start().await;
    let (id, secret) = app
        .post("/v1/webhook_endpoints", json!({"url": receiver.url, "enabled_events": ["payment.succeeded"]}))
        .await
        .1
        .as_object()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o["secret"].as_str().unwrap().to_owned()))
        .unwrap();
    let mut child = crate::common::spawn(&mut payd(
        &app,
        &["serve", "--role", "dispatcher"],
        &[("PAYD_FAULTS__CRASH_AT", "dispatcher.after_send"), ("PAYD_WEBHOOKS__TIMEOUT", "1s")],
    ));
    let p = app.create_payment("pm_test_success", 100).await;
    let pid = p["id"].as_str().unwrap();
    receiver.wait_for("payment.succeeded", pid).await;
    let status = wait_exit(&mut child, WAIT).await;
    assert!(!status.success());
    let pending = deliveries(&app, &id).await;
    assert_eq!(pending[0]["status"], "pending", "the send was never recorded");

    let dispatcher = app.start_more_with(&[Role::Dispatcher], &[("PAYD_WEBHOOKS__TIMEOUT", "1s")]).await;
    wait_delivery(&app, &id, "the delivery after the lease", |d| d["status"] == "succeeded").await;
    let sends = receiver.all();
    assert_eq!(sends.len(), 2, "at least once: sent again after the crash");
    assert_eq!(sends[0].header("webhook-id"), sends[1].header("webhook-id"));
    assert!(sends.iter().all(|r| verify_webhook(&secret, r)));
    dispatcher.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn endpoints_are_capped_per_merchant_and_mode() {
    let app = TestApp::spawn_with(&[Role::Api], &[("PAYD_WEBHOOKS__MAX_ENDPOINTS", "3")]).await;
    let create = |key: String, url: &'static str| {
        let app = &app;
        async move {
            app.call_as(&key, "POST", "/v1/webhook_endpoints", Some(json!({"url": url, "enabled_events": ["*"]})), &[])
                .await
        }
    };
    // Ten at once: the cap holds under a race.
    let answers =
        futures_util::future::join_all((0..10).map(|_| create(app.key.clone(), "http://127.0.0.1:9/hook"))).await;
    let created: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
    assert_eq!(created.len(), 3, "{answers:?}");
    for (status, err) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!((*status, err["error"]["code"].as_str()), (422, Some("endpoint_limit_reached")), "{err}");
    }
    // The other mode has its own room.
    let live =
        payd::testing::add_key(&app.pool, Some(&app.merchant), payd::testing::KeyKind::Secret, true).await.unwrap();
    let (status, body) = create(live, "https://127.0.0.1:9/hook").await;
    assert_eq!(status, 201, "{body}");
    // A deleted endpoint frees its place.
    let id = created[0]["id"].as_str().unwrap();
    let (status, _) = app.call("DELETE", &format!("/v1/webhook_endpoints/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(create(app.key.clone(), "http://127.0.0.1:9/hook").await.0, 201);
    assert_eq!(create(app.key.clone(), "http://127.0.0.1:9/hook").await.0, 422);
    app.stop().await;
}

/// A receiver answering 200 with a 50 MB body: payd reads at most 64 KiB of
/// it, records the delivery, and the rest is never read.
#[tokio::test]
async fn a_huge_answer_is_read_no_further_than_64_kib() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w, f) = (written.clone(), finished.clone());
    tokio::spawn(async move {
        const BODY: usize = 50 * 1024 * 1024;
        while let Ok((mut sock, _)) = listener.accept().await {
            let (w, f) = (w.clone(), f.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {BODY}\r\n\r\n");
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < BODY {
                    if sock.write_all(&chunk).await.is_err() {
                        f.store(true, Ordering::SeqCst);
                        return;
                    }
                    sent += chunk.len();
                    w.fetch_add(chunk.len(), Ordering::SeqCst);
                }
                f.store(true, Ordering::SeqCst);
            });
        }
    });
    let (endpoint, _) = app.add_endpoint(&url).await;
    let p = app.create_payment("pm_test_success", 100).await;
    app.wait_status(p["id"].as_str().unwrap(), "succeeded").await;
    let d = wait_delivery(&app, &endpoint, "the delivery recorded", |d| d["status"] == "succeeded").await;
    assert_eq!(d["last_status_code"], 200, "{d}");
    eventually("the receiver to notice payd hung up", WAIT, || async { finished.load(Ordering::SeqCst).then_some(()) })
        .await;
    let sent = written.load(Ordering::SeqCst);
    // What the kernel buffers on loopback is written too; 50 MB is not.
    assert!(sent < 16 * 1024 * 1024, "payd kept reading: {sent} bytes were taken");
    app.stop().await;
}

/// Contract §11: webhook secrets are stored sealed with `secrets.master_key`;
/// a dump of the table signs nothing, a sealed secret moved to another
/// endpoint does not open, and secrets stored in the clear before are
/// sealed when payd starts.
#[tokio::test]
async fn webhook_secrets_are_sealed_at_rest() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let receiver = Receiver::start().await;
    let (id, secret) = app.add_endpoint(&receiver.url).await;
    let (_, rotated) =
        app.post(&format!("/v1/webhook_endpoints/{id}/rotate_secret"), json!({"expire_previous_in": 3600})).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    let stored: (String, Option<String>) =
        sqlx::query_as("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    for (column, value) in [("secret", Some(stored.0.clone())), ("previous_secret", stored.1.clone())] {
        let value = value.unwrap();
        assert!(value.starts_with("enc:v1:"), "{column} is sealed: {value}");
        assert!(!value.contains(&new[6..]) && !value.contains(&secret[6..]), "{column} holds no secret in the clear");
    }

    // An endpoint stored in the clear (as before secrets were sealed), and
    // one given another endpoint's sealed secret.
    let legacy_receiver = Receiver::start().await;
    let legacy_secret =
        payd::testing::add_endpoint(&app.pool, &app.merchant, legacy_receiver.url.clone(), &["*"]).await.unwrap();
    let moved_receiver = Receiver::start().await;
    let (moved, _) = app.add_endpoint(&moved_receiver.url).await;
    sqlx::query("UPDATE webhook_endpoints SET secret = $2 WHERE id = $1")
        .bind(&moved)
        .bind(&stored.0)
        .execute(&app.pool)
        .await
        .unwrap();

    // A dispatcher starts: it seals the clear one, then sends.
    let more = app.start_more(&[Role::Worker, Role::Dispatcher]).await;
    let plain: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE secret NOT LIKE 'enc:v1:%'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(plain, 0, "every secret is sealed once payd has started");
    let p = app.create_payment("pm_test_success", 100).await;
    let pid = p["id"].as_str().unwrap();
    let hook = receiver.wait_for("payment.created", pid).await;
    assert!(verify_webhook(&new, &hook) && verify_webhook(&secret, &hook), "both sealed secrets sign");
    let hook = legacy_receiver.wait_for("payment.created", pid).await;
    assert!(verify_webhook(&legacy_secret, &hook), "the formerly clear secret still signs");
    let d =
        wait_delivery(&app, &moved, "the moved secret's delivery to fail", |d| d["attempts"].as_i64() >= Some(1)).await;
    assert_ne!(d["status"], "succeeded", "{d}");
    assert!(moved_receiver.all().is_empty(), "nothing was signed with a secret that does not belong to the endpoint");
    more.stop().await;
    app.stop().await;
}
