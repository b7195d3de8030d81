//! Holds (contract §14): scheduled attempts parked during a provider
//! outage, first attempts included, never called while held, and released
//! spread over a window; a hold racing the worker's claims has exactly one
//! winner per attempt.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use payd::app::Role;
use payd::testing::TestWorker;
use serde_json::json;

use crate::common::{TestApp, WAIT, eventually, run_json, settings};
use crate::toolkit::{create_many, ops_key};

async fn statuses(app: &TestApp, payment: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM attempts WHERE payment_id = $1 ORDER BY number")
        .bind(payment)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The transactions the sandbox was called for.
async fn called(app: &TestApp) -> HashSet<String> {
    payd::testing::sandbox_calls(&app.pool).await.unwrap().into_iter().map(|c| c.idempotency_key).collect()
}

async fn transaction_of(app: &TestApp, payment: &str) -> String {
    sqlx::query_scalar("SELECT id FROM transactions WHERE payment_id = $1")
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap()
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn a_hold_parks_due_attempts_and_its_release_spreads_them() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let ops = ops_key(&app).await;
    let (other, _) = app.other_merchant().await;
    let key = app.key.clone();
    let waiting = create_many(&app, &key, "pm_test_flaky", 5).await;
    for p in &waiting {
        app.wait_payment(p, "a retry scheduled", |v| v["next_attempt_at"].is_string()).await;
    }

    // Merchants may not hold the deployment's attempts.
    let (status, _) = app.post("/v1/holds", json!({"provider": "sandbox", "reason": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) = app.get("/v1/holds").await;
    assert_eq!(status, 403);
    for body in [json!({}), json!({"reason": "x", "error_code": "nope"}), json!({"reason": "x", "merchant_id": "m"})] {
        let (status, err) = app.call_as(&ops, "POST", "/v1/holds", Some(body.clone()), &[]).await;
        assert_eq!(status, 400, "{body}: {err}");
    }
    // A hold on another merchant leaves this one's payments alone.
    let (status, elsewhere) =
        app.call_as(&ops, "POST", "/v1/holds", Some(json!({"merchant_id": other, "reason": "theirs"})), &[]).await;
    assert_eq!((status, elsewhere["matched"].as_i64()), (201, Some(0)), "{elsewhere}");

    let (status, hold) = app
        .call_as(&ops, "POST", "/v1/holds", Some(json!({"provider": "sandbox", "reason": "sandbox outage"})), &[])
        .await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!((hold["object"].as_str(), hold["status"].as_str()), (Some("hold"), Some("active")));
    assert!(hold["id"].as_str().unwrap().starts_with("hold_"));
    assert_eq!(hold["matched"], 5, "the scheduled retries: {hold}");
    let hold_id = hold["id"].as_str().unwrap().to_owned();
    for p in &waiting {
        assert_eq!(statuses(&app, p).await, ["failed", "held"]);
    }
    // A new payment's first attempt comes due during the hold: the claim parks it.
    let fresh = app.create_payment("pm_test_success", 900).await["id"].as_str().unwrap().to_owned();
    eventually("the first attempt held", WAIT, || async { (statuses(&app, &fresh).await == ["held"]).then_some(()) })
        .await;
    assert!(!called(&app).await.contains(&transaction_of(&app, &fresh).await), "no provider call while held");
    let (_, p) = app.get(&format!("/v1/payments/{fresh}")).await;
    assert_eq!(p["status"], "pending", "{p}");
    let (status, list) = app.call_as(&ops, "GET", "/v1/holds?status=active", None, &[]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total_count"], 2);
    let listed = list["data"].as_array().unwrap().iter().find(|h| h["id"] == hold_id.as_str()).unwrap().clone();
    assert_eq!(listed["held"], 6, "{listed}");
    let (_, held) = app.call_as(&ops, "GET", "/v1/attempts?status=held", None, &[]).await;
    assert_eq!(held["total_count"], 6, "{held}");
    // The gauges (read by the scheduler every 5 s).
    eventually("the hold gauges", WAIT, || async {
        let text = metrics(&app).await;
        (gauge(&text, "payd_attempts_held") == Some(6.0) && gauge(&text, "payd_holds_active") == Some(2.0))
            .then_some(())
    })
    .await;

    // Release over 12 s: six attempts due 2 s apart from now, in the order they were due.
    let release = format!("/v1/holds/{hold_id}/release");
    let (status, _) = app.call_as(&ops, "POST", &release, Some(json!({"over": "soon"})), &[]).await;
    assert_eq!(status, 400);
    let (status, released) = app.call_as(&ops, "POST", &release, Some(json!({"over": "12s"})), &[]).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!((released["status"].as_str(), released["released"].as_i64()), (Some("released"), Some(6)));
    let due: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM scheduled_at)::float8 FROM attempts WHERE hold_id = $1 ORDER BY scheduled_at",
    )
    .bind(&hold_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(due.len(), 6);
    let gaps: Vec<f64> = due.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (g - 2.0).abs() < 0.01), "spread evenly: {gaps:?}");
    let (status, again) = app.call_as(&ops, "POST", &release, Some(json!({})), &[]).await;
    assert_eq!((status, &again["released_at"]), (200, &released["released_at"]), "idempotent: {again}");
    let (_, p) = app.get(&format!("/v1/payments/{}", waiting[0])).await;
    assert!(p["next_attempt_at"].is_string(), "{p}");
    // The new payment's attempt was due first (at its creation): it runs now.
    let paid = eventually("the released first attempt to succeed", Duration::from_secs(40), || async {
        let (_, p) = app.get(&format!("/v1/payments/{fresh}")).await;
        (p["status"] == "succeeded").then_some(p)
    })
    .await;
    assert_eq!(paid["attempt_count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_hold_racing_claims_has_exactly_one_winner_per_attempt() {
    const N: usize = 120;
    // No worker: the test's own worker claims, as delivered messages would.
    let app = TestApp::spawn_with(&[Role::Api, Role::Dispatcher], &[]).await;
    let ops = ops_key(&app).await;
    let s = settings(&app.vars);
    let worker = TestWorker::new(&app.pool, &s, &s.payments);
    let key = app.key.clone();
    let payments = create_many(&app, &key, "pm_test_success", N).await;
    let attempts: Vec<String> = sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = ANY($1) ORDER BY id")
        .bind(&payments)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts.len(), N);
    // The first 20 run before the hold; the rest race it.
    for a in &attempts[..20] {
        worker.run(a).await.unwrap();
    }
    let runs = futures_util::stream::iter(&attempts[20..])
        .map(|a| async { worker.run(a).await.unwrap() })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    let hold = async {
        let (status, hold) =
            app.call_as(&ops, "POST", "/v1/holds", Some(json!({"provider": "sandbox", "reason": "race"})), &[]).await;
        assert_eq!(status, 201, "{hold}");
        hold
    };
    let (_, hold) = tokio::join!(runs, hold);
    // Every attempt again, as redelivered messages: nothing held runs.
    for a in &attempts {
        worker.run(a).await.unwrap();
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.status, p.status, a.transaction_id FROM attempts a JOIN payments p ON p.id = a.payment_id
         WHERE a.payment_id = ANY($1)",
    )
    .bind(&payments)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let calls = called(&app).await;
    let (mut ran, mut held) = (0, 0);
    for (attempt, payment, txn) in &rows {
        match attempt.as_str() {
            "succeeded" => {
                assert!(calls.contains(txn) && payment == "succeeded", "{txn}");
                ran += 1;
            }
            "held" => {
                assert!(!calls.contains(txn) && payment == "pending", "a held attempt was called: {txn}");
                held += 1;
            }
            other => panic!("attempt of {txn} is {other}: neither run nor held"),
        }
    }
    assert!(ran >= 20 && held > 0, "ran {ran}, held {held}");
    let hold_id = hold["id"].as_str().unwrap();
    let (_, list) = app.call_as(&ops, "GET", "/v1/holds", None, &[]).await;
    assert_eq!(list["data"][0]["held"], held, "{list}");

    // The command line: list, and release at once; every held attempt then runs once.
    let listed = run_json(&app, &["holds", "list"]);
    assert_eq!(listed["data"][0]["id"], hold_id);
    let released = run_json(&app, &["holds", "release", hold_id, "--over", "1s"]);
    assert_eq!((released["status"].as_str(), released["released"].as_i64()), (Some("released"), Some(held)));
    let due: Vec<String> = sqlx::query_scalar("SELECT id FROM attempts WHERE hold_id = $1")
        .bind(hold_id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    eventually("the released attempts due", WAIT, || async {
        let late: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE hold_id = $1 AND scheduled_at > now()")
            .bind(hold_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (late == 0).then_some(())
    })
    .await;
    for a in &due {
        worker.run(a).await.unwrap();
    }
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), N, "every payment charged");
    assert!(charges.iter().all(|c| c.calls == 1), "each exactly once");
    let created = run_json(&app, &["holds", "create", "--provider", "acme", "--reason", "cli"]);
    assert_eq!((created["status"].as_str(), created["matched"].as_i64()), (Some("active"), Some(0)));
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_payment_cancels_its_held_attempt() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let ops = ops_key(&app).await;
    let p = app.create_payment("pm_test_flaky", 400).await["id"].as_str().unwrap().to_owned();
    app.wait_payment(&p, "a retry scheduled", |v| v["next_attempt_at"].is_string()).await;
    let (_, hold) = app
        .call_as(&ops, "POST", "/v1/holds", Some(json!({"error_code": "processing_error", "reason": "r"})), &[])
        .await;
    assert_eq!(hold["matched"], 1, "{hold}");
    let held: String = sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = $1 AND status = 'held'")
        .bind(&p)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (status, err) = app.call_as(&ops, "POST", &format!("/v1/attempts/{held}/cancel"), Some(json!({})), &[]).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("attempt_not_scheduled")), "{err}");
    let (status, canceled) = app.post(&format!("/v1/payments/{p}/cancel"), json!({})).await;
    assert_eq!((status, canceled["status"].as_str()), (200, Some("canceled")), "{canceled}");
    assert_eq!(statuses(&app, &p).await, ["failed", "canceled"], "the release will not run it");
    let release = format!("/v1/holds/{}/release", hold["id"].as_str().unwrap());
    let (status, released) = app.call_as(&ops, "POST", &release, Some(json!({"over": "1s"})), &[]).await;
    assert_eq!((status, released["released"].as_i64()), (200, Some(0)), "{released}");
    assert_eq!(statuses(&app, &p).await, ["failed", "canceled"]);
    app.stop().await;
}
