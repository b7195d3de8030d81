//! Idempotency-Key: replay, conflict, in-flight, and concurrent duplicates.

use payd::app::Role;
use serde_json::json;
use sqlx::Connection;

use crate::common::{TestApp, WAIT, eventually};

fn body() -> serde_json::Value {
    json!({"amount": 2500, "currency": "EUR", "payment_method_id": "pm_test_success", "description": "order 7"})
}

#[tokio::test]
async fn a_repeated_request_answers_the_first_answer_and_creates_nothing() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let h = [("Idempotency-Key", "order-7")];
    let (s1, first) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    let (s2, second) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, second, "same status and body");
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 1);

    // Same key, another body.
    let mut other = body();
    other["amount"] = json!(2501);
    let (status, err) = app.call_as(&app.key, "POST", "/v1/payments", Some(other), &h).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");

    // Keys are per merchant: another merchant's identical key is a new request.
    let (_, other_key) = app.other_merchant().await;
    let (status, theirs) = app.call_as(&other_key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 201);
    assert_ne!(theirs["id"], first["id"]);

    // Too long a key.
    let long = "k".repeat(256);
    let (status, err) =
        app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &[("Idempotency-Key", &long)]).await;
    assert_eq!(status, 400, "{err}");
    app.stop().await;
}

#[tokio::test]
async fn a_key_still_in_flight_is_409() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    // Hold the key's lock as a first request in flight would.
    let mut holder = sqlx::PgConnection::connect(&app.vars["PAYD_DATABASE__URL"]).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1 || ':' || $2, 0))")
        .bind(app.merchant.as_str())
        .bind("test:secret:busy-key")
        .execute(&mut holder)
        .await
        .unwrap();
    let h = [("Idempotency-Key", "busy-key")];
    let (status, err) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_in_use");
    holder.close().await.unwrap();
    let (status, _) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 201, "the key is free once the first request ends");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_duplicates_create_one_payment() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let calls =
        (0..10).map(|_| app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &[("Idempotency-Key", "burst")]));
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> =
        results.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "every 201 is the same payment: {results:?}");
    assert!(results.iter().all(|(s, b)| *s == 201 || (*s == 409 && b["error"]["code"] == "idempotency_key_in_use")));
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_refund_refunds_once() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 1000).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let path = format!("/v1/payments/{id}/refund");
    let h = [("Idempotency-Key", "refund-1")];
    let (s1, r1) = app.call_as(&app.key, "POST", &path, Some(json!({"amount": 400})), &h).await;
    let (s2, r2) = app.call_as(&app.key, "POST", &path, Some(json!({"amount": 400})), &h).await;
    assert_eq!((s1, s2), (200, 200), "{r1} {r2}");
    assert_eq!(r1["id"], r2["id"]);
    assert_eq!(app.count("SELECT count(*) FROM refunds WHERE payment_id = $1", id).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_key_is_used_again_for_a_new_request() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let h = [("Idempotency-Key", "old-key")];
    let (status, first) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 201, "{first}");
    // The answer is past its 24 h retention (the purge has not run yet).
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'test:secret:old-key'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let other = json!({"amount": 990, "currency": "EUR", "payment_method_id": "pm_test_success"});
    let (status, second) = app.call_as(&app.key, "POST", "/v1/payments", Some(other.clone()), &h).await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["id"], first["id"], "a new payment, not a replay");
    assert_eq!(second["amount"], 990);
    // The key now holds the new answer, replayed as it was given.
    let (status, again) = app.call_as(&app.key, "POST", "/v1/payments", Some(other), &h).await;
    assert_eq!((status, &again), (201, &second));
    let (status, err) = app.call_as(&app.key, "POST", "/v1/payments", Some(body()), &h).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    app.stop().await;
}

/// The body sent with key `k-{k}`.
fn keyed_body(k: usize) -> serde_json::Value {
    json!({"amount": 100 + k, "currency": "EUR", "payment_method_id": "pm_test_success"})
}

#[tokio::test]
async fn concurrent_keyed_creates_share_commits_and_each_key_keeps_its_answer() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let send = |k: usize| {
        let app = &app;
        async move {
            let key = format!("k-{k}");
            let (status, answer) =
                app.call_as(&app.key, "POST", "/v1/payments", Some(keyed_body(k)), &[("Idempotency-Key", &key)]).await;
            (k, status, answer)
        }
    };
    // 20 keyed creates at once. The merchant is locked meanwhile, so the
    // writers' first batches wait on their foreign-key checks and the other
    // creates queue behind them; once all are handed over the lock goes.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM merchants FOR UPDATE").execute(&mut *lock).await.unwrap();
    let release = async {
        eventually("all 20 creates handed to the writers", WAIT, || async {
            let (handed, _, _) = payd::testing::group_commit_counts(&app.pool, "create");
            (handed >= 20).then_some(())
        })
        .await;
        lock.rollback().await.unwrap();
    };
    let (first, ()) = tokio::join!(futures_util::future::join_all((0..20).map(send)), release);
    for (k, status, answer) in &first {
        assert_eq!(*status, 201, "key {k}: {answer}");
        assert_eq!(answer["amount"], 100 + *k as i64, "key {k} answers its own payment");
    }
    let commits: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(commits <= 4, "20 keyed creates were written by {commits} transactions");
    let paid: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT p.xmin::text) FROM payments p").fetch_one(&app.pool).await.unwrap();
    assert_eq!(paid, commits, "each key was stored in its payment's transaction");

    // Each stored answer is the payment as it was created, and every key
    // sent again (twice at once) answers it, creating nothing.
    let again = futures_util::future::join_all((0..40).map(|i| send(i % 20))).await;
    for (k, status, answer) in again {
        assert_eq!((status, &answer), (201, &first[k].2), "key {k}");
        let stored: serde_json::Value = sqlx::query_scalar("SELECT response_body FROM idempotency_keys WHERE key = $1")
            .bind(format!("test:secret:k-{k}"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let (status, now) = app.get(&format!("/v1/payments/{}", stored["id"].as_str().unwrap())).await;
        assert_eq!((status, &stored), (200, &now), "key {k}");
    }
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 20);
    app.stop().await;
}

#[tokio::test]
async fn a_key_is_bound_to_the_route_it_was_sent_to_with_its_parameters() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    // Two payments, the same key and the same body: the fingerprint holds
    // the matched route with its {id}, so the second is another request.
    let (mut ids, h) = (Vec::new(), [("Idempotency-Key", "tag-7")]);
    for _ in 0..2 {
        let p = app.create_payment("pm_test_success", 100).await;
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let tags = json!({"tags": ["vip"]});
    let path = |id: &str| format!("/v1/payments/{id}/tags");
    let (s1, first) = app.call_as(&app.key, "POST", &path(&ids[0]), Some(tags.clone()), &h).await;
    assert_eq!(s1, 200, "{first}");
    let (s2, err) = app.call_as(&app.key, "POST", &path(&ids[1]), Some(tags.clone()), &h).await;
    assert_eq!(s2, 409, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    // The same route again replays its first answer.
    let (s3, again) = app.call_as(&app.key, "POST", &path(&ids[0]), Some(tags), &h).await;
    assert_eq!((s3, again), (200, first));
    let (_, other) = app.get(&format!("/v1/payments/{}", ids[1])).await;
    assert_eq!(other["tags"], json!([]), "the refused request changed nothing");
    app.stop().await;
}

/// Contract §11: keys are scoped by merchant, mode and key kind; external
/// keys and pending references by merchant and mode. A test or publishable
/// key can neither replay a live answer nor block a live object.
#[tokio::test]
async fn test_and_live_keys_never_share_keys_references_or_external_keys() {
    use payd::testing::KeyKind;
    // A gateway for live mode; no worker runs, so it is never called.
    let app = TestApp::spawn_with(
        &[Role::Api],
        &[("PAYD_PROVIDERS__ACME__BASE_URL", "http://127.0.0.1:9"), ("PAYD_PROVIDERS__ACME__SECRET", "unused")],
    )
    .await;
    let live = payd::testing::add_key(&app.pool, Some(&app.merchant), KeyKind::Secret, true).await.unwrap();
    let pk = payd::testing::add_key(&app.pool, Some(&app.merchant), KeyKind::Publishable, false).await.unwrap();
    let (status, pm) = app
        .call_as(&live, "POST", "/v1/payment_methods", Some(json!({"provider": "acme", "token": "tok_live"})), &[])
        .await;
    assert_eq!(status, 201, "{pm}");
    let test_body = json!({"amount": 700, "currency": "USD", "payment_method_id": "pm_test_success",
                           "reference": "order-9", "external_key": "ext-9"});
    let mut live_body = test_body.clone();
    live_body["payment_method_id"] = pm["id"].clone();
    let h = [("Idempotency-Key", "shared-9")];
    let (s1, test_p) = app.call_as(&app.key, "POST", "/v1/payments", Some(test_body.clone()), &h).await;
    assert_eq!(s1, 201, "{test_p}");
    // The live key's request with the same Idempotency-Key, reference and
    // external_key is a new live payment, not the test one replayed nor a 409.
    let (s2, live_p) = app.call_as(&live, "POST", "/v1/payments", Some(live_body.clone()), &h).await;
    assert_eq!(s2, 201, "{live_p}");
    assert_ne!(live_p["id"], test_p["id"]);
    assert_eq!(live_p["livemode"], true);
    // A publishable key of the same mode has its own keys too: with another
    // body it is a new request, not idempotency_key_reused.
    let mut pk_body = test_body.clone();
    pk_body["reference"] = json!("order-10");
    pk_body["external_key"] = json!("ext-10");
    let (s3, pk_p) = app.call_as(&pk, "POST", "/v1/payments", Some(pk_body), &h).await;
    assert_eq!(s3, 201, "{pk_p}");
    assert_ne!(pk_p["id"], test_p["id"]);
    // Within one mode the rules still hold.
    let (status, err) =
        app.call_as(&live, "POST", "/v1/payments", Some(live_body), &[("Idempotency-Key", "other-9")]).await;
    assert_eq!(status, 409, "a second pending live payment for order-9: {err}");
    // Each key replays its own answer.
    let (_, again) = app.call_as(&app.key, "POST", "/v1/payments", Some(test_body.clone()), &h).await;
    assert_eq!(again["id"], test_p["id"]);

    // An answer stored before keys were scoped (the bare key) is still
    // replayed: a client retrying across the upgrade is not charged twice.
    let h = [("Idempotency-Key", "before-upgrade")];
    let mut body = test_body;
    body["reference"] = json!("order-11");
    body["external_key"] = json!("ext-11");
    let (_, first) = app.call_as(&app.key, "POST", "/v1/payments", Some(body.clone()), &h).await;
    let moved = sqlx::query("UPDATE idempotency_keys SET key = 'before-upgrade' WHERE key LIKE '%:before-upgrade'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    let (status, replayed) = app.call_as(&app.key, "POST", "/v1/payments", Some(body), &h).await;
    assert_eq!((status, &replayed["id"]), (201, &first["id"]), "{replayed}");
    app.stop().await;
}
