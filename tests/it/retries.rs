//! Scheduled retries of transient failures, attempts, and operators
//! cancelling scheduled retries.

use std::sync::Arc;
use std::time::Duration;

use payd::app::Role;
use payd::testing::{KeyKind, TestWorker};
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually, run_json, verify_webhook};

async fn ops_key(app: &TestApp) -> String {
    payd::testing::add_key(&app.pool, None, KeyKind::Ops, true).await.unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the payment's first attempt failed and a retry is scheduled.
async fn wait_retry_scheduled(app: &TestApp, id: &str) -> Value {
    app.wait_payment(id, "a retry scheduled", |p| p["attempt_count"] == 1 && p["next_attempt_at"].is_string()).await
}

#[tokio::test]
async fn a_flaky_payment_is_retried_on_schedule_and_succeeds() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1s,1s,1s")]).await;
    let p = app.create_payment("pm_test_flaky", 800).await;
    let id = p["id"].as_str().unwrap();
    let waiting = wait_retry_scheduled(&app, id).await;
    assert_eq!(waiting["status"], "pending");
    assert!(waiting["error_code"].is_null(), "no error until the payment fails");

    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["attempt_count"], 3);
    assert!(paid["next_attempt_at"].is_null());

    let (status, list) = app.get(&format!("/v1/payments/{id}/attempts")).await;
    assert_eq!(status, 200, "{list}");
    let attempts = list["data"].as_array().unwrap();
    let summary: Vec<(i64, &str, Option<&str>)> = attempts
        .iter()
        .map(|a| (a["number"].as_i64().unwrap(), a["status"].as_str().unwrap(), a["error_code"].as_str()))
        .collect();
    assert_eq!(
        summary,
        [(3, "succeeded", None), (2, "failed", Some("processing_error")), (1, "failed", Some("processing_error"))],
        "newest first"
    );
    assert!(attempts.iter().all(|a| a["object"] == "attempt" && a["transaction_id"] == attempts[0]["transaction_id"]));

    // Each retry waited its step, within the ±10 % jitter.
    let gaps: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (n.scheduled_at - p.finished_at))::float8 FROM attempts p
         JOIN attempts n ON n.transaction_id = p.transaction_id AND n.number = p.number + 1
         WHERE p.payment_id = $1 ORDER BY p.number",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(gaps.len(), 2);
    assert!(gaps.iter().all(|g| (0.85..=1.15).contains(g)), "{gaps:?}");

    // Three calls with one idempotency key, one charge.
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].calls, 3);
    app.stop().await;
}

#[tokio::test]
async fn an_unavailable_provider_fails_the_payment_when_the_schedule_is_used_up() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "500ms,500ms")]).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_unavailable", 800).await;
    let id = p["id"].as_str().unwrap();
    let failed = app.wait_status(id, "failed").await;
    assert_eq!(failed["error_code"], "provider_unavailable", "the last error code");
    assert_eq!(failed["attempt_count"], 3, "one attempt and the two retries of the schedule");
    let hook = receiver.wait_for("payment.failed", id).await;
    assert!(verify_webhook(&secret, &hook));
    assert!(payd::testing::sandbox_charges(&app.pool).await.unwrap().is_empty());

    // A hard decline is not retried.
    let d = app.create_payment("pm_test_decline", 100).await;
    let d = app.wait_status(d["id"].as_str().unwrap(), "failed").await;
    assert_eq!(d["attempt_count"], 1);
    let (_, list) = app.get(&format!("/v1/payments/{}/attempts", d["id"].as_str().unwrap())).await;
    assert_eq!(list["total_count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn operators_list_and_cancel_scheduled_retries() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let ops = ops_key(&app).await;
    let (other_merchant, other_key) = app.other_merchant().await;
    let p = app.create_payment("pm_test_flaky", 800).await;
    let id = p["id"].as_str().unwrap();
    wait_retry_scheduled(&app, id).await;

    let (status, scheduled) = app.call_as(&ops, "GET", "/v1/attempts?status=scheduled", None, &[]).await;
    assert_eq!(status, 200, "{scheduled}");
    assert_eq!(scheduled["total_count"], 1);
    let attempt = scheduled["data"][0].clone();
    assert_eq!((attempt["number"].as_i64(), attempt["payment_id"].as_str()), (Some(2), Some(id)));
    let att = attempt["id"].as_str().unwrap();

    // Scoping: the owner sees it, another merchant does not; merchant_id is for operators.
    let (_, own) = app.get("/v1/attempts?status=scheduled").await;
    assert_eq!(ids(&own), [att]);
    let (_, theirs) = app.call_as(&other_key, "GET", "/v1/attempts", None, &[]).await;
    assert_eq!(theirs["total_count"], 0);
    let (_, by_merchant) =
        app.call_as(&ops, "GET", &format!("/v1/attempts?merchant_id={other_merchant}"), None, &[]).await;
    assert_eq!(by_merchant["total_count"], 0);
    let (_, by_merchant) =
        app.call_as(&ops, "GET", &format!("/v1/attempts?merchant_id={}", app.merchant), None, &[]).await;
    assert_eq!(by_merchant["total_count"], 2);
    let (status, _) = app.get(&format!("/v1/attempts?merchant_id={}", app.merchant)).await;
    assert_eq!(status, 403);
    let (status, all) = app.call_as(&ops, "GET", "/v1/payments", None, &[]).await;
    assert_eq!(status, 200, "operator keys read every merchant's payments: {all}");
    assert_eq!(all["total_count"], 1, "{all}");
    let (status, _) = app.call_as(&ops, "POST", "/v1/payments", Some(json!({})), &[]).await;
    assert_eq!(status, 403, "operator keys cannot create payments");

    let cancel = format!("/v1/attempts/{att}/cancel");
    let (status, _) = app.call_as(&other_key, "POST", &cancel, Some(json!({})), &[]).await;
    assert_eq!(status, 404, "another merchant's attempt");
    let (status, canceled) = app.call_as(&ops, "POST", &cancel, Some(json!({"reason": "customer called"})), &[]).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["id"], att);
    let (status, again) = app.call_as(&ops, "POST", &cancel, Some(json!({})), &[]).await;
    assert_eq!(status, 409, "{again}");
    let first = attempt_numbered(&app, id, 1).await;
    let (status, _) = app.call_as(&ops, "POST", &format!("/v1/attempts/{first}/cancel"), Some(json!({})), &[]).await;
    assert_eq!(status, 409, "a finished attempt cannot be canceled");

    let failed = app.wait_status(id, "failed").await;
    assert_eq!(failed["error_code"], "retry_canceled");
    assert_eq!(failed["failure_message"], "customer called");
    assert!(failed["next_attempt_at"].is_null());
    let hook = receiver.wait_for("payment.failed", id).await;
    assert!(verify_webhook(&secret, &hook));
    assert_eq!(hook.json()["data"]["object"]["error_code"], "retry_canceled");
    app.stop().await;
}

async fn attempt_numbered(app: &TestApp, payment: &str, number: i32) -> String {
    sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = $1 AND number = $2")
        .bind(payment)
        .bind(number)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cli_lists_and_cancels_attempts() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let p = app.create_payment("pm_test_flaky", 800).await;
    let id = p["id"].as_str().unwrap();
    wait_retry_scheduled(&app, id).await;
    let list = run_json(&app, &["attempts", "list", "--status", "scheduled"]);
    assert_eq!(list["total_count"], 1);
    let att = list["data"][0]["id"].as_str().unwrap().to_owned();
    let by_payment = run_json(&app, &["attempts", "list", "--payment", id]);
    assert_eq!(by_payment["total_count"], 2);
    let canceled = run_json(&app, &["attempts", "cancel", &att, "--reason", "ops ticket 42"]);
    assert_eq!(canceled["status"], "canceled");
    let failed = app.wait_status(id, "failed").await;
    assert_eq!(failed["error_code"], "retry_canceled");
    let out = crate::common::payd(&app, &["attempts", "cancel", &att], &[])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "cancelling twice fails");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["code"], "attempt_not_scheduled");
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_payment_waiting_for_a_retry_cancels_the_retry() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1s")]).await;
    let p = app.create_payment("pm_test_flaky", 800).await;
    let id = p["id"].as_str().unwrap();
    wait_retry_scheduled(&app, id).await;
    let (status, canceled) = app.post(&format!("/v1/payments/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let second = attempt_numbered(&app, id, 2).await;
    let (_, attempts) = app.get(&format!("/v1/payments/{id}/attempts")).await;
    assert_eq!(attempts["data"][0]["id"], second.as_str());
    assert_eq!(attempts["data"][0]["status"], "canceled");
    // Past its due time the scheduler has nothing to run.
    let due: time::OffsetDateTime = sqlx::query_scalar("SELECT scheduled_at FROM attempts WHERE id = $1")
        .bind(&second)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // The in-process scheduler looks every 500 ms: a retry left scheduled
    // would be enqueued (and run) within a second of its due time.
    let settled = due + Duration::from_millis(1500);
    eventually("a second and a half past the retry's due time", WAIT, || async {
        (time::OffsetDateTime::now_utc() > settled).then_some(())
    })
    .await;
    let (started, enqueued): (Option<time::OffsetDateTime>, Option<time::OffsetDateTime>) =
        sqlx::query_as("SELECT started_at, enqueued_at FROM attempts WHERE id = $1")
            .bind(&second)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((started, enqueued), (None, None), "the canceled retry was never enqueued or started");
    assert_eq!(payd::testing::scheduler_tick(&app.pool, Duration::from_secs(3600), false).await.unwrap(), 0);
    let txn: String = sqlx::query_scalar("SELECT id FROM transactions WHERE payment_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    let ours: Vec<_> = calls.iter().filter(|c| c.idempotency_key == txn).collect();
    assert_eq!(ours.len(), 1, "{calls:?}");
    assert_eq!(ours[0].calls, 1, "the canceled retry never reached the provider");
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_racing_a_starting_attempt_has_exactly_one_winner() {
    // No worker role: the test plays the worker, racing the operator's cancel.
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let ops = ops_key(&app).await;
    let payments = payd::config::PaymentSettings {
        retry_schedule: vec![],
        inquiry_schedule: vec![],
        provider_timeout: Duration::from_secs(5),
        pending_timeout: Duration::from_secs(60),
        requeue_after: Duration::from_secs(3600),
        calls_in_flight: 16,
    };
    let runner = Arc::new(TestWorker::new(&app.pool, &crate::common::settings(&app.vars), &payments));
    let (mut ran, mut canceled) = (0, 0);
    for i in 0..30u64 {
        let p = app.create_payment("pm_test_success", 100).await;
        let id = p["id"].as_str().unwrap().to_owned();
        let att = attempt_numbered(&app, &id, 1).await;
        let path = format!("/v1/attempts/{att}/cancel");
        // Every third round the worker starts late, so both sides win some;
        // the others are a real race (the worker starts 0–4 ms after the cancel is sent).
        let head_start = if i % 3 == 0 { Duration::from_millis(60) } else { Duration::from_micros((i % 9) * 500) };
        let worker = async {
            tokio::time::sleep(head_start).await;
            runner.run(&att).await
        };
        let (run, (status, _)) = tokio::join!(worker, app.call_as(&ops, "POST", &path, Some(json!({})), &[]));
        run.unwrap();
        let txn: String = sqlx::query_scalar("SELECT id FROM transactions WHERE payment_id = $1")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let charged = payd::testing::sandbox_calls(&app.pool).await.unwrap().iter().any(|c| c.idempotency_key == txn);
        let (_, payment) = app.get(&format!("/v1/payments/{id}")).await;
        match status {
            200 => {
                canceled += 1;
                assert!(!charged, "a canceled attempt never reaches the provider");
                assert_eq!(payment["status"], "failed");
                assert_eq!(payment["error_code"], "retry_canceled");
            }
            409 => {
                ran += 1;
                assert!(charged);
                assert_eq!(payment["status"], "succeeded");
            }
            other => panic!("unexpected cancel status {other}"),
        }
    }
    eprintln!("race: attempt ran first {ran} times, cancel won {canceled} times");
    assert_eq!(ran + canceled, 30);
    assert!(ran > 0 && canceled > 0, "both sides won some rounds");
    app.stop().await;
}

#[tokio::test]
async fn a_scheduled_retry_survives_a_restart() {
    let mut app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "2s,1h")]).await;
    let p = app.create_payment("pm_test_flaky", 800).await;
    let id = p["id"].as_str().unwrap().to_owned();
    wait_retry_scheduled(&app, &id).await;
    app.running.take().unwrap().stop().await;
    // A new process (same database and broker) runs the retry at its time.
    let restarted = app.start_more(&[]).await;
    app.base = format!("http://{}", restarted.addr.unwrap());
    let p = app.wait_payment(&id, "the second attempt", |p| p["attempt_count"] == 2).await;
    assert_eq!(p["status"], "pending", "flaky fails twice; the third attempt waits an hour");
    let on_time: bool =
        sqlx::query_scalar("SELECT started_at >= scheduled_at FROM attempts WHERE payment_id = $1 AND number = 2")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(on_time, "the retry ran at its time, not before");
    app.running = Some(restarted);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_workers_never_run_an_attempt_twice() {
    let app = TestApp::spawn_with(&[Role::Api], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "300ms,300ms")]).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(app.create_payment("pm_test_flaky", 100).await["id"].as_str().unwrap().to_owned());
    }
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(app.start_more_with(&[Role::Worker], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "300ms,300ms")]).await);
    }
    for id in &ids {
        let p = app.wait_status(id, "succeeded").await;
        assert_eq!(p["attempt_count"], 3);
    }
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    assert_eq!(calls.len(), 10);
    assert!(calls.iter().all(|c| c.calls == 3), "every attempt ran exactly once: {calls:?}");
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts").fetch_one(&app.pool).await.unwrap();
    assert_eq!(attempts, 30);
    let finished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attempts WHERE status IN ('succeeded', 'failed') AND finished_at IS NOT NULL
           AND lease_until IS NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(finished, 30, "every attempt finished, none left running");
    for w in workers {
        w.stop().await;
    }
    app.stop().await;
}
