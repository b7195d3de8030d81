//! Group commit: the creates of concurrent requests are written together
//! (src/db/group_commit.rs), yet each request gets its own answer, its own
//! audit actor and all of its companions.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::common::{TestApp, WAIT, eventually, run_json};
use payd::app::Role;

async fn key_id(app: &TestApp, key: &str) -> String {
    sqlx::query_scalar("SELECT id FROM api_keys WHERE key_hash = sha256(convert_to($1, 'UTF8'))")
        .bind(key)
        .fetch_one(&app.pool)
        .await
        .expect("the key's id")
}

#[tokio::test]
async fn concurrent_creates_share_commits_and_keep_their_own_answers_and_actors() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let second = run_json(&app, &["keys", "create", "--merchant", app.merchant.as_str()])["secret_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = app.other_merchant().await;
    let (status, taken) = app
        .post(
            "/v1/payments",
            json!({"amount": 5, "currency": "EUR", "payment_method_id": "pm_test_success", "external_key": "taken"}),
        )
        .await;
    assert_eq!(status, 201, "{taken}");

    // 90 creates at once from three keys (two merchants). Among them: one
    // reuses a taken external_key, and two race for one fresh reference.
    // The merchants are locked meanwhile, so the writers' first batches wait
    // on their foreign-key checks and the other creates queue behind them;
    // the lock goes once all are queued, and those are written together.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM merchants FOR UPDATE").execute(&mut *lock).await.unwrap();
    let keys = [app.key.clone(), second.clone(), other.clone()];
    let calls = (0..90).map(|i| {
        let (app, key) = (&app, keys[i % 3].clone());
        async move {
            let mut body = json!({"amount": 100 + i, "currency": "EUR", "payment_method_id": "pm_test_success",
                "external_key": format!("order-{i}"), "metadata": {"i": i.to_string()}});
            match i {
                30 => body["external_key"] = json!("taken"),
                31 | 34 => body["reference"] = json!("policy-9"),
                _ => {}
            }
            let (status, answer) = app.call_as(&key, "POST", "/v1/payments", Some(body), &[]).await;
            (i, key, status, answer)
        }
    });
    let release = async {
        eventually("all 90 creates handed to the writers", WAIT, || async {
            // This test's database only; its first create (`taken`) was written before.
            let (handed, _, _) = payd::testing::group_commit_counts(&app.pool, "create");
            (handed >= 91).then_some(())
        })
        .await;
        lock.rollback().await.unwrap();
    };
    let (answers, ()) = tokio::join!(join_all(calls), release);

    let mut created: Vec<(String, String, Value)> = Vec::new();
    let mut race = Vec::new();
    for (i, key, status, answer) in &answers {
        match i {
            30 => {
                assert_eq!(*status, 409, "{answer}");
                assert_eq!(answer["error"]["code"], "external_key_in_use");
                continue;
            }
            31 | 34 => race.push((*status, answer.clone())),
            _ => assert_eq!(*status, 201, "request {i}: {answer}"),
        }
        if *status == 201 {
            // Each answer is its own request's payment.
            assert_eq!(answer["amount"], 100 + *i as i64, "{answer}");
            assert_eq!(answer["external_key"], format!("order-{i}"));
            assert_eq!(answer["metadata"]["i"], i.to_string());
            assert!(answer["number"].as_i64().unwrap() > 0, "{answer}");
            created.push((answer["id"].as_str().unwrap().to_owned(), key.clone(), answer.clone()));
        }
    }
    race.sort_by_key(|(s, _)| *s);
    assert_eq!(race.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [201, 422], "{race:?}");
    assert_eq!(race[1].1["error"]["code"], "pending_payment_exists");
    assert!(race[1].1["error"]["message"].as_str().unwrap().contains(race[0].1["id"].as_str().unwrap()));
    assert_eq!(created.len(), 88);

    // Every payment has its companions, its created event with the final
    // number, and an audit entry naming the key that created it.
    for (id, key, answer) in &created {
        let actor = key_id(&app, key).await;
        let row: (i64, i64, i64, i64, String, Value) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM transactions WHERE payment_id = p.id AND type = 'purchase'),
                    (SELECT count(*) FROM attempts WHERE payment_id = p.id AND number = 1),
                    (SELECT count(*) FROM events WHERE payment_id = p.id AND type = 'payment.created'),
                    (SELECT count(*) FROM audit_log WHERE payment_id = p.id),
                    (SELECT actor FROM audit_log WHERE payment_id = p.id ORDER BY id LIMIT 1),
                    (SELECT data FROM events WHERE payment_id = p.id AND type = 'payment.created')
             FROM payments p WHERE p.id = $1",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!((row.0, row.1, row.2, row.3), (1, 1, 1, 1), "{id}");
        assert_eq!(row.4, actor, "the audit log names the key that created {id}");
        assert_eq!(row.5["object"]["number"], answer["number"], "{id}");
        assert_eq!(row.5["object"]["created_at"], answer["created_at"], "{id}");
    }
    // And they were written together: rows of one statement share a
    // transaction id, so fewer transactions than payments means batches.
    let (payments, commits): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT xmin::text::bigint) FROM payments")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(payments, 89);
    // (The batch holding the two refused creates is split in halves until
    // they stand alone: about two commits per halving.)
    assert!(commits * 3 <= payments, "{commits} commits for {payments} payments: creates were not batched");
    app.stop().await;
}
