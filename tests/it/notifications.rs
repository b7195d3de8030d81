//! pm_test_async: a provider that answers "pending" and settles later with a
//! signed notification; forged, stale and replayed notifications; the janitor
//! that asks again when no notification comes.

use payd::app::Role;
use payd::testing::{SIGNATURE_HEADER, TestWorker, sign_notification};
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, settings, verify_webhook};

/// The sandbox secret from config/default.toml.
const SANDBOX_SECRET: &str = "sandbox_notification_secret_change_me";
/// Nothing listens here: notifications sent there are lost.
const NOWHERE: &str = "http://127.0.0.1:9/lost";

#[tokio::test]
async fn an_async_payment_completes_from_the_signed_notification() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_async", 4000).await;
    let id = p["id"].as_str().unwrap();
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["amount_captured"], 4000);
    assert!(paid["provider_reference"].as_str().unwrap().starts_with("ch_"));
    let hook = receiver.wait_for("payment.succeeded", id).await;
    assert!(verify_webhook(&secret, &hook));
    let (_, attempts) = app.get(&format!("/v1/payments/{id}/attempts")).await;
    assert_eq!(attempts["total_count"], 1);
    assert_eq!(attempts["data"][0]["status"], "succeeded");
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    assert_eq!(calls[0].calls, 1, "the notification settled it; nobody had to ask again");
    let notes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM provider_notifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(notes, 1);
    app.stop().await;
}

async fn post_note(app: &TestApp, provider: &str, body: &Value, signature: Option<String>) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/provider_notifications/{provider}", app.base))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(sig) = signature {
        req = req.header(SIGNATURE_HEADER, sig);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn forged_stale_and_replayed_notifications_change_nothing() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    // The test plays the worker, with a sandbox whose own notification is lost.
    let mut vars = app.vars.clone();
    vars.insert("PAYD_PROVIDERS__SANDBOX__NOTIFY_URL".into(), NOWHERE.into());
    let s = settings(&vars);
    let runner = TestWorker::new(&app.pool, &s, &s.payments);
    let p = app.create_payment("pm_test_async", 900).await;
    let id = p["id"].as_str().unwrap();
    let (att, txn): (String, String) = sqlx::query_as("SELECT id, transaction_id FROM attempts WHERE payment_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    runner.run(&att).await.unwrap();
    let held: String =
        sqlx::query_scalar("SELECT status FROM attempts WHERE id = $1").bind(&att).fetch_one(&app.pool).await.unwrap();
    assert_eq!(held, "running", "a pending answer keeps the attempt open");

    let note = json!({"id": "ntf_test_1", "type": "charge.succeeded", "idempotency_key": txn, "reference": "ch_x"});
    let body = note.to_string();
    for (case, sig) in [
        ("wrong secret", Some(sign_notification("not the secret", now(), body.as_bytes()))),
        ("stale", Some(sign_notification(SANDBOX_SECRET, now() - 600, body.as_bytes()))),
        ("garbage", Some("t=abc,v1=???".to_owned())),
        ("missing", None),
    ] {
        let (status, err) = post_note(&app, "sandbox", &note, sig).await;
        assert_eq!(status, 400, "{case}: {err}");
        assert_eq!(err["error"]["code"], "signature_invalid", "{case}");
    }
    let (status, _) =
        post_note(&app, "acme", &note, Some(sign_notification(SANDBOX_SECRET, now(), body.as_bytes()))).await;
    assert_eq!(status, 404, "unknown provider");
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(p["status"], "pending", "nothing changed");

    let good = Some(sign_notification(SANDBOX_SECRET, now(), body.as_bytes()));
    let (status, ok) = post_note(&app, "sandbox", &note, good.clone()).await;
    assert_eq!(status, 200, "{ok}");
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(p["status"], "succeeded");

    let (status, again) = post_note(&app, "sandbox", &note, good).await;
    assert_eq!((status, &again["duplicate"]), (200, &json!(true)));
    let late =
        json!({"id": "ntf_test_2", "type": "charge.failed", "idempotency_key": txn, "error_code": "card_declined"});
    let late_body = late.to_string();
    let (status, _) =
        post_note(&app, "sandbox", &late, Some(sign_notification(SANDBOX_SECRET, now(), late_body.as_bytes()))).await;
    assert_eq!(status, 200, "a late notification is acknowledged");
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(p["status"], "succeeded", "and changes nothing");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payment_id = $1 AND type = 'payment.succeeded'", id).await,
        1
    );
    app.stop().await;
}

/// An unauthenticated caller controls the signature header and the body:
/// 40,000 `v1=` entries over a 60 KB body cost one refusal, not 40,000 MACs.
#[tokio::test]
async fn a_huge_signature_header_is_refused_at_once() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let note = json!({"id": "ntf_big", "type": "charge.succeeded", "idempotency_key": "txn_x",
                      "message": "x".repeat(60_000)});
    let body = note.to_string();
    let one = sign_notification(SANDBOX_SECRET, now(), body.as_bytes());
    let (t, sig) = one.split_once(",v1=").unwrap();
    let forged = format!("{t}{}", ",v1=AAAA".repeat(40_000));
    let huge = format!("{forged},v1={sig}");
    for (case, header) in
        [("40,000 forged entries", huge), ("six entries", format!("{t}{}", format!(",v1={sig}").repeat(6)))]
    {
        let started = std::time::Instant::now();
        let (status, err) = post_note(&app, "sandbox", &note, Some(header)).await;
        let took = started.elapsed();
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("signature_invalid")), "{case}: {err}");
        assert!(took < std::time::Duration::from_millis(500), "{case}: answered in {took:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_pending_payment_that_never_hears_back_is_checked_again() {
    let app = TestApp::spawn_with(
        &[],
        &[("PAYD_PROVIDERS__SANDBOX__NOTIFY_URL", NOWHERE), ("PAYD_PAYMENTS__PENDING_TIMEOUT", "1s")],
    )
    .await;
    let p = app.create_payment("pm_test_async", 700).await;
    let id = p["id"].as_str().unwrap();
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!(paid["attempt_count"], 1, "the same attempt, asked again");
    let calls = payd::testing::sandbox_calls(&app.pool).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].calls, 2, "the janitor asked the provider again with the same key");
    let notes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM provider_notifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(notes, 0, "no notification ever arrived");
    app.stop().await;
}

/// Contract §12: a success the provider reports for a payment payd settled
/// as failed is never dropped — the customer was charged.
#[tokio::test]
async fn a_late_success_for_a_failed_payment_is_recorded() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "100ms")]).await;
    let p = app.create_payment("pm_test_unavailable", 1300).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "failed").await;
    let txn: String = sqlx::query_scalar("SELECT id FROM transactions WHERE payment_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let note = json!({"id": "ntf_late_1", "type": "charge.succeeded", "idempotency_key": txn, "reference": "ch_late"});
    let body = note.to_string();
    let (status, ok) =
        post_note(&app, "sandbox", &note, Some(sign_notification(SANDBOX_SECRET, now(), body.as_bytes()))).await;
    assert_eq!(status, 200, "{ok}");
    let paid = app.wait_status(id, "succeeded").await;
    assert_eq!((paid["amount_captured"].as_i64(), paid["error_code"].as_str()), (Some(1300), None), "{paid}");
    assert_eq!(paid["provider_reference"], "ch_late");
    app.assert_amounts(id).await;
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT type FROM events WHERE payment_id = $1 AND type <> 'payment.attempt_failed' ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(types, ["payment.created", "payment.failed", "payment.succeeded"]);
    let (_, log) = app.get(&format!("/v1/payments/{id}/audit_log?limit=100")).await;
    let actions: Vec<&str> = log["data"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"provider.late_success"), "the audit log says why: {actions:?}");
    // The same success again changes nothing.
    let again = json!({"id": "ntf_late_2", "type": "charge.succeeded", "idempotency_key": txn, "reference": "ch_late"});
    let body = again.to_string();
    post_note(&app, "sandbox", &again, Some(sign_notification(SANDBOX_SECRET, now(), body.as_bytes()))).await;
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(p["amount_captured"], 1300);
    app.stop().await;
}
