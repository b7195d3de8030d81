//! The queue roles' hot statements (the dispatcher's claim, the relay's
//! take, the scheduler's passes) read what they take, never the backlog,
//! even on fresh tables that have no statistics (what a production table
//! looks like when its backlog grows faster than autovacuum analyzes it).

use payd::app::Role;
use serde_json::Value;

use crate::common::TestApp;

/// Every plan node of `plan`, depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = vec![plan];
    for child in plan["Plans"].as_array().into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

/// Fills the tables the hot statements read, straight (no payd role runs,
/// and nothing analyzes them): 10 endpoints × 5,000 events of pending
/// deliveries, 50,000 outbox rows, 50,000 due attempts never enqueued and
/// 20,000 running ones whose lease ran out.
async fn backlog(app: &TestApp) {
    let merchant = app.merchant.as_str();
    let statements = [
        "INSERT INTO webhook_endpoints (id, merchant_id, livemode, url, enabled_events, status, secret)
         SELECT 'we_' || lpad(i::text, 32, '0'), $1, false, 'http://127.0.0.1:9/hook', '{*}', 'enabled',
                'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
         FROM generate_series(1, 10) i",
        "INSERT INTO events (id, merchant_id, livemode, type, data)
         SELECT 'evt_' || lpad(i::text, 32, '0'), $1, false, 'payment.succeeded', '{\"object\": {}}'
         FROM generate_series(1, 5000) i",
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
         SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, w.id, 'pending', now() - interval '1 s'
         FROM events e CROSS JOIN webhook_endpoints w WHERE $1 <> ''",
        "INSERT INTO outbox (queue, payload) SELECT 'payd.attempts', '{}' FROM generate_series(1, 50000) WHERE $1 <> ''",
        "INSERT INTO payments (id, merchant_id, livemode, amount, currency, status, payment_method_id, provider, method)
         SELECT 'pay_' || lpad(i::text, 32, '0'), $1, false, 100, 'USD', 'pending', 'pm_test_success', 'sandbox', 'card'
         FROM generate_series(1, 70000) i",
        "INSERT INTO transactions (id, payment_id, type, amount, currency, status)
         SELECT 'txn_' || lpad(i::text, 32, '0'), 'pay_' || lpad(i::text, 32, '0'), 'purchase', 100, 'USD', 'pending'
         FROM generate_series(1, 70000) i WHERE $1 <> ''",
        "INSERT INTO attempts (id, payment_id, transaction_id, number, status, scheduled_at, claim_token, lease_until)
         SELECT 'att_' || lpad(i::text, 32, '0'), 'pay_' || lpad(i::text, 32, '0'), 'txn_' || lpad(i::text, 32, '0'), 1,
                CASE WHEN i <= 50000 THEN 'scheduled' ELSE 'running' END, now() - interval '1 s',
                CASE WHEN i > 50000 THEN gen_random_uuid() END, CASE WHEN i > 50000 THEN now() - interval '1 s' END
         FROM generate_series(1, 70000) i WHERE $1 <> ''",
    ];
    for sql in statements {
        sqlx::query(sql).bind(merchant).execute(&app.pool).await.unwrap();
    }
}

#[tokio::test]
async fn hot_statements_walk_an_index_on_fresh_tables_with_a_large_backlog() {
    // payd migrates the database, then stops: a running relay, dispatcher
    // or scheduler would take the backlog before it is explained.
    let mut app = TestApp::spawn_with(&[Role::Api], &[]).await;
    app.running.take().expect("payd runs").stop().await;
    backlog(&app).await;
    let analyzed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_user_tables WHERE greatest(last_analyze, last_autoanalyze) IS NOT NULL
           AND relname IN ('webhook_deliveries', 'outbox', 'attempts')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    if analyzed > 0 {
        eprintln!(
            "note: autovacuum analyzed {analyzed} of the tables already; those plans are checked with statistics"
        );
    }
    let plans = payd::testing::hot_plans(&app.vars["PAYD_DATABASE__URL"]).await.unwrap();
    assert_eq!(plans.len(), 4);
    for (name, plan) in &plans {
        let root = &plan[0]["Plan"];
        assert_eq!(root["Actual Rows"].as_f64(), Some(64.0), "{name} took 64 of the backlog: {plan:#}");
        let mut read = 0.0;
        for node in nodes(root) {
            let table = node["Relation Name"].as_str().unwrap_or_default();
            if !["webhook_deliveries", "outbox", "attempts"].contains(&table) {
                continue;
            }
            let kind = node["Node Type"].as_str().unwrap();
            assert!(
                !matches!(kind, "Seq Scan" | "Bitmap Heap Scan" | "Bitmap Index Scan"),
                "{name}: a {kind} on {table} reads the backlog: {plan:#}"
            );
            read += node["Actual Rows"].as_f64().unwrap_or(0.0) * node["Actual Loops"].as_f64().unwrap_or(1.0);
        }
        // What it reads is what it takes (and, for the claim, a probe per
        // endpoint): not the tens of thousands waiting.
        assert!(read <= 500.0, "{name} read {read} rows of its backlog: {plan:#}");
        let pages =
            root["Shared Hit Blocks"].as_f64().unwrap_or(0.0) + root["Shared Read Blocks"].as_f64().unwrap_or(0.0);
        assert!(pages < 2_000.0, "{name} touched {pages} pages: {plan:#}");
    }
    app.stop().await;
}
