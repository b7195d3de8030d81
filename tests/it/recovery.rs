//! Recovery of an endpoint after an outage (contract §13), with a real
//! receiver: failed deliveries are sent again and missed events once, by a
//! tracked job that a dispatcher killed mid-recovery leaves to the next.

use std::collections::HashMap;

use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually, now_rfc3339, payd, wait_exit};

/// Successful requests per `webhook-id` the receiver answered after `from`.
fn successes(receiver: &Receiver, from: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in receiver.all().into_iter().skip(from) {
        *seen.entry(r.header("webhook-id").to_owned()).or_insert(0) += 1;
    }
    seen
}

/// An outage: every delivery to the endpoint fails for good, then it is
/// disabled while more events happen. Answers the failed and the missed
/// event ids.
async fn outage(app: &TestApp, receiver: &Receiver, endpoint: &str) -> (Vec<String>, Vec<String>) {
    receiver.always(500);
    for _ in 0..3 {
        app.create_payment("pm_test_success", 200).await;
    }
    let failed: Vec<String> = eventually("six failed deliveries", WAIT, || async {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'failed' ORDER BY event_id",
        )
        .bind(endpoint)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        (ids.len() == 6).then_some(ids)
    })
    .await;
    let path = format!("/v1/webhook_endpoints/{endpoint}");
    app.post(&path, json!({"status": "disabled"})).await;
    let mut missed = Vec::new();
    for _ in 0..2 {
        let p = app.create_payment("pm_test_success", 200).await;
        app.wait_status(p["id"].as_str().unwrap(), "succeeded").await;
        missed.extend(
            sqlx::query_scalar::<_, String>("SELECT id FROM events WHERE payment_id = $1")
                .bind(p["id"].as_str().unwrap())
                .fetch_all(&app.pool)
                .await
                .unwrap(),
        );
    }
    app.post(&path, json!({"status": "enabled"})).await;
    receiver.always(200);
    (failed, missed)
}

async fn completed(app: &TestApp, recovery: &str) -> Value {
    eventually("the recovery completes", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/recoveries/{recovery}")).await;
        (r["status"] == "completed").then_some(r)
    })
    .await
}

#[tokio::test]
async fn a_recovery_sends_failed_deliveries_again_and_missed_events_once() {
    let app = TestApp::spawn_with(&[], &[("PAYD_WEBHOOKS__RETRY_SCHEDULE", "100ms")]).await;
    let receiver = Receiver::start().await;
    let since = now_rfc3339();
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let (failed, missed) = outage(&app, &receiver, &endpoint).await;
    let before = receiver.all().len();
    let path = format!("/v1/webhook_endpoints/{endpoint}/recover");
    let (status, r) = app.post(&path, json!({"since": since, "include_missed": true})).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!((r["object"].as_str(), r["deliveries"].as_i64()), (Some("recovery"), Some(10)), "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("rcv_"));
    let done = completed(&app, r["id"].as_str().unwrap()).await;
    assert!(done["completed_at"].is_string(), "{done}");
    let sent = eventually("every recovered event delivered", WAIT, || async {
        let sent = successes(&receiver, before);
        (sent.len() == 10).then_some(sent)
    })
    .await;
    for id in failed.iter().chain(&missed) {
        assert_eq!(sent.get(id), Some(&1), "{id} sent once by the recovery");
    }
    // A window before anything happened recovers nothing; bad windows are refused.
    let (status, r) = app.post(&path, json!({"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"})).await;
    assert_eq!((status, r["deliveries"].as_i64()), (202, Some(0)), "{r}");
    let (status, _) = app.post(&path, json!({"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(status, 400);
    let (status, _) = app.post(&path, json!({})).await;
    assert_eq!(status, 400, "since is required");
    let (_, other) = app.other_merchant().await;
    let (status, _) =
        app.call_as(&other, "GET", &format!("/v1/recoveries/{}", done["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_dispatcher_killed_mid_recovery_leaves_it_to_the_next_and_nothing_goes_twice() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Worker], &[("PAYD_WEBHOOKS__RETRY_SCHEDULE", "100ms")]).await;
    let receiver = Receiver::start().await;
    let since = now_rfc3339();
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let mut dispatcher = crate::common::spawn(&mut payd(
        &app,
        &["serve", "--role", "dispatcher"],
        &[("PAYD_FAULTS__CRASH_AT", "recovery.before_commit")],
    ));
    let (failed, missed) = outage(&app, &receiver, &endpoint).await;
    let before = receiver.all().len();
    let path = format!("/v1/webhook_endpoints/{endpoint}/recover");
    let (status, r) = app.post(&path, json!({"since": since, "include_missed": true})).await;
    assert_eq!(status, 202, "{r}");
    let recovery = r["id"].as_str().unwrap().to_owned();
    let exit = wait_exit(&mut dispatcher, WAIT).await;
    assert!(!exit.success(), "the dispatcher died in the recovery's first batch");
    let (_, still) = app.get(&format!("/v1/recoveries/{recovery}")).await;
    assert_eq!(still["status"], "running", "{still}");
    let (status, err) = app.post(&path, json!({"since": since})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("recovery_running")), "{err}");
    // A healthy dispatcher takes over.
    let more = app.start_more(&[Role::Dispatcher]).await;
    completed(&app, &recovery).await;
    let sent = eventually("every recovered event delivered", WAIT, || async {
        let sent = successes(&receiver, before);
        (sent.len() == failed.len() + missed.len()).then_some(sent)
    })
    .await;
    for id in failed.iter().chain(&missed) {
        assert_eq!(sent.get(id), Some(&1), "{id} sent once");
    }
    let rows = app.count("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", &endpoint).await;
    assert_eq!(rows, 10, "one delivery per event and endpoint");
    more.stop().await;
    app.stop().await;
}
