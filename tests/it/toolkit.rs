//! The operator toolkit on scheduled attempts (contract §14): retry now,
//! reschedule, bulk cancel, from HTTP and the command line.

use std::time::Duration;

use futures_util::StreamExt;
use payd::testing::KeyKind;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually, payd, run_json};

pub async fn ops_key(app: &TestApp) -> String {
    payd::testing::add_key(&app.pool, None, KeyKind::Ops, true).await.unwrap()
}

/// The id of the operator key `key` (the audit log's actor).
pub async fn key_id(app: &TestApp, kind: &str) -> String {
    sqlx::query_scalar("SELECT id FROM api_keys WHERE kind = $1 ORDER BY created_at DESC LIMIT 1")
        .bind(kind)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The payment's scheduled attempt, once its first call failed and a retry waits.
async fn scheduled_retry(app: &TestApp, payment: &str) -> String {
    eventually(&format!("a retry scheduled for {payment}"), WAIT, || async {
        sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = $1 AND status = 'scheduled' AND number > 1")
            .bind(payment)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
    })
    .await
}

async fn attempt_status(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM attempts WHERE id = $1").bind(id).fetch_one(&app.pool).await.unwrap()
}

async fn audit_actions(app: &TestApp, payment: &str) -> Vec<Value> {
    let (status, log) = app.get(&format!("/v1/payments/{payment}/audit_log?limit=100")).await;
    assert_eq!(status, 200, "{log}");
    log["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn operators_reschedule_and_retry_now_a_scheduled_retry() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h,1h")]).await;
    let ops = ops_key(&app).await;
    let (_, other_key) = app.other_merchant().await;
    let p = app.create_payment("pm_test_flaky", 700).await;
    let id = p["id"].as_str().unwrap();
    let att = scheduled_retry(&app, id).await;

    // Reschedule: bounds on `at`, then two hours ahead.
    let path = format!("/v1/attempts/{att}/reschedule");
    let now = time::OffsetDateTime::now_utc();
    for (body, why) in [
        (json!({}), "at is required"),
        (json!({"at": "tomorrow"}), "not RFC 3339"),
        (json!({"at": rfc3339(now - Duration::from_secs(3600))}), "an hour ago"),
        (json!({"at": rfc3339(now + Duration::from_secs(200 * 24 * 3600))}), "200 days ahead"),
        (json!({"at": rfc3339(now), "when": "x"}), "an unknown field"),
    ] {
        let (status, err) = app.call_as(&ops, "POST", &path, Some(body), &[]).await;
        assert_eq!(status, 400, "{why}: {err}");
        assert!(err["error"]["param"].is_string(), "{why}: {err}");
    }
    let (status, _) = app.call_as(&other_key, "POST", &path, Some(json!({"at": rfc3339(now)})), &[]).await;
    assert_eq!(status, 404, "another merchant's attempt");
    let at = now + Duration::from_secs(7200);
    let (status, moved) =
        app.call_as(&ops, "POST", &path, Some(json!({"at": rfc3339(at), "reason": "provider maintenance"})), &[]).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!((moved["object"].as_str(), moved["status"].as_str()), (Some("attempt"), Some("scheduled")));
    let due = payd_time(&moved["scheduled_at"]);
    assert!((due - at).abs() < Duration::from_secs(1), "{moved}");
    let (_, payment) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(payment["next_attempt_at"], moved["scheduled_at"], "the payment says when: {payment}");
    let ops_id = key_id(&app, "ops").await;
    let entries = audit_actions(&app, id).await;
    let entry = entries.iter().find(|e| e["action"] == "attempt.reschedule").expect("audited");
    assert_eq!(
        (entry["actor"].as_str(), entry["reason"].as_str()),
        (Some(ops_id.as_str()), Some("provider maintenance"))
    );

    // Retry now, by the owning merchant: its work message is queued with
    // it (the scheduler would not send one: it counts the attempt as
    // enqueued), so it runs at once and fails again, as flaky does.
    let (status, now_due) = app.post(&format!("/v1/attempts/{att}/retry_now"), json!({})).await;
    assert_eq!(status, 200, "{now_due}");
    assert!(payd_time(&now_due["scheduled_at"]) <= time::OffsetDateTime::now_utc());
    eventually("the retried attempt to run", Duration::from_secs(10), || async {
        (attempt_status(&app, &att).await == "failed").then_some(())
    })
    .await;
    for route in ["retry_now", "reschedule"] {
        let body = json!({"at": rfc3339(time::OffsetDateTime::now_utc() + Duration::from_secs(60))});
        let body = if route == "retry_now" { json!({}) } else { body };
        let (status, err) = app.call_as(&ops, "POST", &format!("/v1/attempts/{att}/{route}"), Some(body), &[]).await;
        assert_eq!((status, err["error"]["code"].as_str()), (409, Some("attempt_not_scheduled")), "{route}: {err}");
    }
    let (status, _) = app.post("/v1/attempts/att_00000000000000000000000000000000/retry_now", json!({})).await;
    assert_eq!(status, 404);

    // The third attempt, from the command line: rescheduled, then run now; flaky succeeds on it.
    let third = scheduled_retry(&app, id).await;
    assert_ne!(third, att);
    let at = rfc3339(time::OffsetDateTime::now_utc() + Duration::from_secs(1800));
    let moved = run_json(&app, &["attempts", "reschedule", &third, "--at", &at]);
    assert_eq!(moved["status"], "scheduled");
    let run = run_json(&app, &["attempts", "retry-now", &third, "--reason", "ticket 7"]);
    assert_eq!(run["id"], third.as_str());
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["attempt_count"], 3);
    let out =
        payd(&app, &["attempts", "retry-now", &third], &[]).stdout(std::process::Stdio::piped()).output().unwrap();
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "attempt_not_scheduled");
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!((charges.len(), charges[0].calls), (1, 3), "one charge, three calls");
    app.stop().await;
}

fn payd_time(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
}

/// Creates `n` payments with `key` and `method`, `concurrency` at a time; answers their ids.
pub async fn create_many(app: &TestApp, key: &str, method: &str, n: usize) -> Vec<String> {
    futures_util::stream::iter(0..n)
        .map(|_| async {
            let body = json!({"amount": 500, "currency": "USD", "payment_method_id": method});
            let (status, p) = app.call_as(key, "POST", "/v1/payments", Some(body), &[]).await;
            assert_eq!(status, 201, "{p}");
            p["id"].as_str().unwrap().to_owned()
        })
        .buffer_unordered(32)
        .collect()
        .await
}

async fn scalar(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn bulk_cancel_cancels_thousands_of_scheduled_retries() {
    const N: usize = 2000;
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start().await;
    app.add_endpoint(&receiver.url).await;
    let ops = ops_key(&app).await;
    let (other, other_key) = app.other_merchant().await;
    let key = app.key.clone();
    let mine = create_many(&app, &key, "pm_test_flaky", N).await;
    let unavailable = app.create_payment("pm_test_unavailable", 300).await["id"].as_str().unwrap().to_owned();
    let theirs = create_many(&app, &other_key, "pm_test_flaky", 1).await.remove(0);
    eventually("every retry scheduled", Duration::from_secs(180), || async {
        let n = scalar(&app, "SELECT count(*) FROM attempts WHERE status = 'scheduled' AND number = 2").await;
        (n == N as i64 + 2).then_some(())
    })
    .await;

    let bulk = |key: &str, body: Value| {
        let (key, app) = (key.to_owned(), &app);
        async move { app.call_as(&key, "POST", "/v1/attempts/bulk_cancel", Some(body), &[]).await }
    };
    // Refusals: no filter, no reason, a bad field, another merchant's attempts for a merchant key.
    for body in [
        json!({"reason": "x"}),
        json!({"filter": {}}),
        json!({"filter": {"error_code": "nonsense"}, "reason": "x"}),
        json!({"filter": {"merchant": "x"}, "reason": "x"}),
        json!({"filter": {"scheduled_before": "soon"}, "reason": "x"}),
    ] {
        let (status, err) = bulk(&ops, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
    }
    let (status, err) = bulk(&key, json!({"filter": {"merchant_id": other}, "reason": "x"})).await;
    assert_eq!(status, 403, "{err}");

    // Dry runs count without cancelling: a merchant key sees its own only.
    let (status, own) = bulk(&key, json!({"filter": {}, "reason": "count", "dry_run": true})).await;
    assert_eq!((status, own), (200, json!({"matched": N + 1, "canceled": 0})));
    let filter = json!({"merchant_id": app.merchant, "provider": "sandbox", "error_code": "processing_error"});
    let (_, dry) = bulk(&ops, json!({"filter": filter, "reason": "count", "dry_run": true})).await;
    assert_eq!(dry, json!({"matched": N, "canceled": 0}));
    let before = rfc3339(time::OffsetDateTime::now_utc());
    let (_, none) = bulk(&ops, json!({"filter": {"scheduled_before": before}, "reason": "x", "dry_run": true})).await;
    assert_eq!(none["matched"], 0, "every retry is an hour ahead");
    assert_eq!(scalar(&app, "SELECT count(*) FROM attempts WHERE status = 'canceled'").await, 0);

    let started = std::time::Instant::now();
    let (status, done) = bulk(&ops, json!({"filter": filter, "reason": "acme incident 9"})).await;
    assert_eq!((status, done), (200, json!({"matched": N, "canceled": N})));
    tracing::info!(elapsed = ?started.elapsed(), "bulk cancel of {N}");
    // What the single cancel does, to each: attempt, transaction, payment, event, audit.
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM attempts WHERE status = 'canceled' AND error_code = 'retry_canceled'
                   AND cancellation_reason = 'acme incident 9'),
                (SELECT count(*) FROM transactions WHERE status = 'failed' AND error_code = 'retry_canceled'),
                (SELECT count(*) FROM payments WHERE status = 'failed' AND error_code = 'retry_canceled'
                   AND failure_message = 'acme incident 9' AND next_attempt_at IS NULL),
                (SELECT count(*) FROM events WHERE type = 'payment.failed'),
                (SELECT count(*) FROM audit_log WHERE action = 'attempt.bulk_cancel' AND reason = 'acme incident 9')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let n = N as i64;
    assert_eq!(counts, (n, n, n, n, n));
    let deliveries = scalar(
        &app,
        "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE e.type = 'payment.failed'",
    )
    .await;
    assert_eq!(deliveries, n, "one delivery per event to the endpoint");
    let sample = &mine[N / 2];
    let hook = receiver.wait_for("payment.failed", sample).await;
    assert_eq!(hook.json()["data"]["object"]["error_code"], "retry_canceled");
    // Outside the filter: untouched.
    for untouched in [&unavailable, &theirs] {
        let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
            .bind(untouched)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(status, "pending", "{untouched}");
    }
    let (_, again) = bulk(&ops, json!({"filter": filter, "reason": "again"})).await;
    assert_eq!(again, json!({"matched": 0, "canceled": 0}), "nothing left: idempotent");

    // From the command line, the merchant's last one (its other retry failed with provider_unavailable).
    let dry =
        run_json(&app, &["attempts", "bulk-cancel", "--merchant", app.merchant.as_str(), "--reason", "r", "--dry-run"]);
    assert_eq!(dry, json!({"matched": 1, "canceled": 0}));
    let done = run_json(
        &app,
        &[
            "attempts",
            "bulk-cancel",
            "--merchant",
            app.merchant.as_str(),
            "--error-code",
            "provider_unavailable",
            "--reason",
            "r",
        ],
    );
    assert_eq!(done, json!({"matched": 1, "canceled": 1}));
    app.wait_status(&unavailable, "failed").await;
    app.stop().await;
}

#[tokio::test]
async fn a_bulk_cancel_racing_claims_has_exactly_one_winner_per_attempt() {
    const N: usize = 300;
    // No worker: the test's own claims race the cancel, as delivered messages would.
    let app = TestApp::spawn_with(&[payd::app::Role::Api, payd::app::Role::Dispatcher], &[]).await;
    let ops = ops_key(&app).await;
    let s = crate::common::settings(&app.vars);
    let worker = payd::testing::TestWorker::new(&app.pool, &s, &s.payments);
    let key = app.key.clone();
    let payments = create_many(&app, &key, "pm_test_success", N).await;
    let attempts: Vec<String> = sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = ANY($1) ORDER BY id")
        .bind(&payments)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let runs = futures_util::stream::iter(&attempts)
        .map(|a| async { worker.run(a).await.unwrap() })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    let cancel =
        app.call_as(&ops, "POST", "/v1/attempts/bulk_cancel", Some(json!({"filter": {}, "reason": "race"})), &[]);
    let (_, (status, done)) = tokio::join!(runs, cancel);
    assert_eq!(status, 200, "{done}");
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.status, p.status, a.transaction_id FROM attempts a JOIN payments p ON p.id = a.payment_id
         WHERE a.payment_id = ANY($1)",
    )
    .bind(&payments)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let calls: std::collections::HashSet<String> =
        payd::testing::sandbox_calls(&app.pool).await.unwrap().into_iter().map(|c| c.idempotency_key).collect();
    let mut canceled = 0;
    for (attempt, payment, txn) in &rows {
        match (attempt.as_str(), payment.as_str()) {
            ("succeeded", "succeeded") => assert!(calls.contains(txn), "{txn}"),
            ("canceled", "failed") => {
                assert!(!calls.contains(txn), "a canceled attempt was called: {txn}");
                canceled += 1;
            }
            other => panic!("{txn}: {other:?}"),
        }
    }
    assert_eq!(done["canceled"], canceled, "{done}");
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'payment.failed'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(failed, canceled, "one payment.failed per canceled attempt");
    app.stop().await;
}
