//! The worker's group commits (src/worker/group_commit.rs on
//! src/db/group_commit.rs): attempts delivered together are claimed and recorded
//! by shared statements and commits, yet every payment gets its own outcome,
//! amounts, audit entry, event and webhook.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::common::{Receiver, TestApp, WAIT, eventually, verify_webhook};
use payd::app::Role;

/// What the group-commit writers of `stage` did on this test's database:
/// (jobs handed to them, batches, jobs in those batches).
fn staged(app: &TestApp, stage: &'static str) -> (u64, u64, u64) {
    payd::testing::group_commit_counts(&app.pool, stage)
}

#[tokio::test]
async fn attempts_run_together_share_commits_and_keep_their_own_outcomes() {
    let app = TestApp::spawn_with(&[Role::Api, Role::Dispatcher], &[]).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;

    // 60 payments wait in the work queue before any worker runs: purchases
    // that succeed, purchases declined for good, and authorizations.
    let methods = [("pm_test_success", true), ("pm_test_decline", true), ("pm_test_success", false)];
    let mut expected = HashMap::new();
    for i in 0..60 {
        let (method, capture) = methods[i % 3];
        let (status, p) = app
            .post(
                "/v1/payments",
                json!({"amount": 100 + i, "currency": "EUR", "payment_method_id": method, "capture": capture}),
            )
            .await;
        assert_eq!(status, 201, "{p}");
        let want = match (method, capture) {
            ("pm_test_decline", _) => "failed",
            (_, true) => "succeeded",
            _ => "requires_capture",
        };
        expected.insert(p["id"].as_str().unwrap().to_owned(), (want, 100 + i as i64));
    }

    // Every payment row is locked meanwhile, so the outcome writers' first
    // batches wait on it and the other outcomes queue behind them; the lock
    // goes once all 60 are handed over, and those are written together.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM payments FOR UPDATE").execute(&mut *lock).await.unwrap();
    let worker = app.start_more(&[Role::Worker]).await;
    eventually("all 60 outcomes handed to the writers", WAIT, || async {
        (staged(&app, "outcome").0 >= 60).then_some(())
    })
    .await;
    lock.rollback().await.unwrap();

    for (id, (status, amount)) in &expected {
        let p = app.wait_status(id, status).await;
        let (captured, capturable) = match *status {
            "succeeded" => (*amount, 0),
            "requires_capture" => (0, *amount),
            _ => (0, 0),
        };
        assert_eq!(p["amount_captured"], captured, "{p}");
        assert_eq!(p["amount_capturable"], capturable, "{p}");
        assert_eq!(p["attempt_count"], 1, "{p}");
        match *status {
            "failed" => {
                assert_eq!(p["error_code"], "card_declined", "{p}");
                assert!(p["provider_reference"].is_null(), "{p}");
            }
            _ => {
                assert!(p["error_code"].is_null(), "{p}");
                assert!(p["provider_reference"].as_str().is_some_and(|r| r.starts_with("ch_")), "{p}");
            }
        }
        app.assert_amounts(id).await;
        let attempt_status = if *status == "failed" { "failed" } else { "succeeded" };
        let finished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM attempts WHERE payment_id = $1 AND status = $2 AND finished_at IS NOT NULL AND lease_until IS NULL",
        )
        .bind(id)
        .bind(attempt_status)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(finished, 1, "{id}: one finished attempt");
        let txn_status: String = sqlx::query_scalar("SELECT status FROM transactions WHERE payment_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(txn_status, attempt_status, "{id}");
        // One audit entry for the outcome, by the system.
        let audited = app.count("SELECT count(*) FROM audit_log WHERE payment_id = $1 AND actor = 'system' AND action = 'provider.outcome'", id).await;
        assert_eq!(audited, 1, "{id}");
    }

    // Shared commits: the 60 outcomes went out in a few transactions.
    let (_, batches, jobs) = staged(&app, "outcome");
    assert_eq!(jobs, 60);
    assert!(batches <= 4, "60 outcomes in {batches} batches");
    let commits: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM payments").fetch_one(&app.pool).await.unwrap();
    assert!(commits <= 4, "the payments' outcomes were written by {commits} transactions");
    assert!(staged(&app, "claim").1 < 60, "claims were batched too");

    // Each payment's final event, once, and its webhook, signed.
    let finals = ["payment.succeeded", "payment.failed", "payment.requires_capture"];
    for (id, (status, _)) in &expected {
        let kind = format!("payment.{status}");
        let events =
            app.count("SELECT count(*) FROM events WHERE payment_id = $1 AND type LIKE 'payment.%' AND type NOT IN ('payment.created', 'payment.attempt_failed')", id).await;
        assert_eq!(events, 1, "{id}");
        let attempt_failed = app
            .count("SELECT count(*) FROM events WHERE payment_id = $1 AND type = 'payment.attempt_failed'", id)
            .await;
        assert_eq!(attempt_failed, i64::from(*status == "failed"), "a failed charge's attempt is told once: {id}");
        let hook = receiver.wait_for(&kind, id).await;
        assert!(verify_webhook(&secret, &hook), "{id}");
        assert_eq!(hook.json()["data"]["object"]["status"], *status);
    }
    // Every delivery recorded as succeeded, one log row each, no duplicates.
    eventually("every delivery recorded", WAIT, || async {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded'")
            .fetch_one(&app.pool)
            .await
            .ok()?;
        (pending == 0).then_some(())
    })
    .await;
    let (deliveries, logged): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NOT NULL AND last_status_code = 200),
                (SELECT count(*) FROM webhook_delivery_attempts WHERE status_code = 200)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // And payment.attempt_failed for each failed charge.
    let failures = expected.values().filter(|(status, _)| *status == "failed").count() as i64;
    assert_eq!(deliveries, 120 + failures, "payment.created and a final event for each");
    assert_eq!(logged, 120 + failures);
    let seen: HashSet<String> = receiver
        .all()
        .iter()
        .filter(|r| finals.contains(&r.json()["type"].as_str().unwrap_or("")))
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(seen.len(), 60);

    worker.stop().await;
    app.stop().await;
}
