//! Fault injection: bursts of payments while processes are killed with
//! SIGKILL at random moments, while the provider fails or hangs on 30 % of
//! calls, while receivers fail half the time. After each, the promise must
//! hold: every accepted payment reaches a terminal state, each was charged
//! exactly once at the provider, its amounts equal its succeeded
//! transactions, and every subscribed endpoint got every event (deduplicated
//! by `webhook-id`) with a valid signature.
//!
//! The random choices come from a seed printed at the start; set
//! `PAYD_CHAOS_SEED` to replay one. `PAYD_CHAOS_ROUNDS` makes the kill test
//! longer (the soak variant: `PAYD_CHAOS_ROUNDS=50 scripts/test chaos`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use payd::app::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::{ChildGuard, Receiver, TestApp, eventually, payd, spawn, verify_webhook};

/// How long the end state may take: leases of killed workers (2 × provider
/// timeout) and dispatchers (2 × webhook timeout + 5 s) must run out first.
const SETTLE: Duration = Duration::from_secs(180);

fn seed() -> u64 {
    let seed = std::env::var("PAYD_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("chaos seed: {seed} (set PAYD_CHAOS_SEED to replay)");
    seed
}

/// Creates `n` payments at once, as a careful client would: each with its
/// own Idempotency-Key, retried until payd gives a definite answer. Answers
/// the ids of the accepted ones.
pub async fn burst(app: &TestApp, tag: &str, n: usize, method: &str) -> Vec<String> {
    let creates = (0..n).map(|i| {
        let key = format!("{tag}-{i}");
        async move {
            eventually(&format!("a definite answer for {key}"), SETTLE, || async {
                let resp = create(app, 100 + i as i64, method, Some(&key)).await?;
                match resp.status().as_u16() {
                    201 => resp.json::<Value>().await.ok()?["id"].as_str().map(str::to_owned),
                    // In flight elsewhere, payd's own trouble, or rate of the moment: ask again.
                    409 | 500..=599 => None,
                    other => panic!("{key}: unexpected {other}"),
                }
            })
            .await
        }
    });
    futures_util::future::join_all(creates).await
}

/// `POST /v1/payments` once, with a key or not; `None` when no answer came.
async fn create(app: &TestApp, amount: i64, method: &str, key: Option<&str>) -> Option<reqwest::Response> {
    let mut req = app.http.post(format!("{}/v1/payments", app.base)).bearer_auth(&app.key);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let body = json!({"amount": amount, "currency": "USD", "payment_method_id": method});
    req.json(&body).timeout(Duration::from_secs(10)).send().await.ok()
}

/// Creates `n` payments at once without Idempotency-Keys, each sent once:
/// these go through the group commit (src/db/group_commit.rs). A client
/// without a key cannot safely retry, so only the `201`s count as accepted;
/// the promise is about those. Answers their ids.
pub async fn burst_without_keys(app: &TestApp, n: usize, method: &str) -> Vec<String> {
    let creates = (0..n).map(|i| async move {
        let resp = create(app, 500 + i as i64, method, None).await?;
        match resp.status().as_u16() {
            201 => resp.json::<Value>().await.ok()?["id"].as_str().map(str::to_owned),
            // payd's own trouble (a process killed, a database away): not accepted.
            500..=599 => None,
            other => panic!("keyless create {i}: unexpected {other}"),
        }
    });
    futures_util::future::join_all(creates).await.into_iter().flatten().collect()
}

/// Waits until every payment succeeded (the terminal state all of them reach here).
pub async fn wait_succeeded(app: &TestApp, ids: &[String]) {
    eventually("every payment succeeded", SETTLE, || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments WHERE id = ANY($1) AND status <> 'succeeded'")
                .bind(ids)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (pending == 0).then_some(())
    })
    .await;
}

/// The promise, checked after the storm. `charges` is SQL answering one
/// `key` row per idempotency key the provider charged.
pub async fn assert_promise_kept(app: &TestApp, ids: &[String], receivers: &[(&Receiver, &str)], charges: &str) {
    wait_succeeded(app, ids).await;
    // Exactly one purchase per payment, and the provider charged each once.
    let per_payment: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.payment_id, count(DISTINCT t.id), count(c.key)
         FROM transactions t LEFT JOIN ({charges}) c ON c.key = t.id
         WHERE t.payment_id = ANY($1) AND t.type = 'purchase' GROUP BY t.payment_id"
    )))
    .bind(ids)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(per_payment.len(), ids.len(), "a purchase per payment");
    for (payment, txns, charged) in &per_payment {
        assert_eq!((*txns, *charged), (1, 1), "payment {payment}: {txns} purchases, charged {charged} times");
    }
    // Amounts equal the succeeded transactions.
    let wrong: Vec<String> = sqlx::query_scalar(
        "SELECT p.id FROM payments p
         LEFT JOIN LATERAL (SELECT COALESCE(SUM(amount) FILTER (WHERE status = 'succeeded' AND type IN ('purchase', 'capture')), 0) AS captured
                            FROM transactions WHERE payment_id = p.id) t ON true
         WHERE p.id = ANY($1) AND (p.amount_captured <> t.captured OR p.amount_refunded <> 0)",
    )
    .bind(ids)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(wrong.is_empty(), "amounts differ from transactions: {wrong:?}");
    // Every endpoint got every event, signed.
    for (receiver, secret) in receivers {
        let wanted: HashSet<(String, &str)> =
            ids.iter().flat_map(|id| [(id.clone(), "payment.created"), (id.clone(), "payment.succeeded")]).collect();
        eventually("every event delivered to every endpoint", SETTLE, || async {
            let mut seen_ids = HashSet::new();
            let mut got = HashSet::new();
            for r in receiver.all() {
                if !seen_ids.insert(r.header("webhook-id").to_owned()) {
                    continue; // a redelivery: receivers dedupe on webhook-id
                }
                assert!(verify_webhook(secret, &r), "a webhook with a bad signature");
                let v = r.json();
                if let Some(kind) = ["payment.created", "payment.succeeded"].into_iter().find(|k| v["type"] == *k) {
                    got.insert((v["data"]["object"]["id"].as_str().unwrap_or_default().to_owned(), kind));
                }
            }
            wanted.is_subset(&got).then_some(())
        })
        .await;
    }
}

/// The sandbox's ledger as (key) rows of succeeded charges.
pub const SANDBOX_CHARGES: &str =
    "SELECT idempotency_key AS key FROM sandbox_charges WHERE outcome->>'result' = 'succeeded'";

struct Fleet {
    procs: HashMap<&'static str, Vec<ChildGuard>>,
    listen: String,
}

impl Fleet {
    fn start(app: &TestApp, role: &'static str, listen: &str) -> ChildGuard {
        let mut cmd = payd(app, &["serve", "--role", role], &[("PAYD_HTTP__LISTEN", listen), ("RUST_LOG", "error")]);
        cmd.stderr(std::process::Stdio::null());
        spawn(&mut cmd)
    }

    /// SIGKILLs one process of `role` (no chance to finish anything);
    /// answers its slot and whether the kill really hit a running process
    /// (it had not exited on its own, and it died of SIGKILL).
    fn kill(&mut self, role: &'static str, which: usize) -> (usize, bool) {
        use std::os::unix::process::ExitStatusExt;
        let list = self.procs.get_mut(role).unwrap();
        let i = which % list.len();
        let running = list[i].try_wait().ok().flatten().is_none();
        let sent = list[i].kill().is_ok();
        let died_of_sigkill = list[i].wait().ok().and_then(|s| s.signal()) == Some(9);
        (i, running && sent && died_of_sigkill)
    }

    fn restart(&mut self, app: &TestApp, role: &'static str, slot: usize) {
        let listen = self.listen.clone();
        self.procs.get_mut(role).unwrap()[slot] = Self::start(app, role, &listen);
    }
}

#[tokio::test]
async fn kill_9_of_every_role_during_bursts_loses_nothing_and_charges_once() {
    let mut rng = StdRng::seed_from_u64(seed());
    let rounds: usize = std::env::var("PAYD_CHAOS_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    // The test process only relays (and holds the database); every role runs
    // as its own process: one api, two workers, two dispatchers, one scheduler.
    let mut app = TestApp::spawn_with(&[Role::Relay], &[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    app.base = format!("http://{listen}");
    let mut fleet = Fleet { procs: HashMap::new(), listen: listen.clone() };
    for (role, n) in [("api", 1), ("worker", 2), ("dispatcher", 2), ("scheduler", 1)] {
        fleet.procs.insert(role, (0..n).map(|_| Fleet::start(&app, role, &listen)).collect());
    }
    // The port was free when picked, but another test may take it before
    // the api binds it: then the api exits, and gets another port.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let ready = app.http.get(format!("{}/health/ready", app.base)).send().await.ok().filter(|r| r.status() == 200);
        if ready.is_some() {
            break;
        }
        if fleet.procs.get_mut("api").unwrap()[0].0.try_wait().ok().flatten().is_some() {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            eprintln!("the api process exited before it was ready; restarting it on port {port}");
            fleet.listen = format!("127.0.0.1:{port}");
            app.base = format!("http://{}", fleet.listen);
            fleet.restart(&app, "api", 0);
        }
        assert!(tokio::time::Instant::now() < deadline, "the api process did not come up within {SETTLE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;

    let mut accepted = Vec::new();
    let (mut planned, mut kills) = (0, 0);
    let mut keyless_accepted = 0;
    for round in 0..rounds {
        let tag = format!("round-{round}");
        let mut roles = ["api", "worker", "dispatcher", "scheduler"];
        roles.sort_by_key(|_| rng.random::<u32>());
        let plan: Vec<(&'static str, u64, u64, usize)> = roles
            .iter()
            .map(|r| (*r, rng.random_range(0..250), rng.random_range(20..250), rng.random_range(0..8usize)))
            .collect();
        let app_ref = &app;
        let storm = async {
            let mut hit = 0;
            for (role, before, down, which) in &plan {
                tokio::time::sleep(Duration::from_millis(*before)).await;
                let (slot, killed) = fleet.kill(role, *which);
                if killed {
                    hit += 1;
                } else {
                    eprintln!("round {round}: the {role} process in slot {slot} was not running when killed");
                }
                tokio::time::sleep(Duration::from_millis(*down)).await;
                fleet.restart(app_ref, role, slot);
            }
            hit
        };
        let (ids, keyless, hit) = tokio::join!(
            burst(&app, &tag, 25, "pm_test_success"),
            burst_without_keys(&app, 15, "pm_test_success"),
            storm
        );
        planned += plan.len();
        kills += hit;
        accepted.extend(ids);
        keyless_accepted += keyless.len();
        accepted.extend(keyless);
    }
    // Every kill hit a process that was running (none had died on its own).
    assert_eq!(kills, planned, "{kills} of {planned} kills hit a running process");
    assert!(keyless_accepted > 0, "no create without a key was accepted: the group commit went untested");
    assert_promise_kept(&app, &accepted, &[(&receiver, &secret)], SANDBOX_CHARGES).await;
    drop(fleet);
    app.stop().await;
}

/// A fake HTTP gateway that keeps its own charges by Idempotency-Key, fails
/// 15 % of first calls with a 500 (charging nothing) and answers 15 % of first
/// calls only after payd's timeout (having charged): the outcome payd must
/// find out by asking again with the same key.
#[derive(Clone, Default)]
struct FlakyGateway {
    charged: Arc<Mutex<HashMap<String, u32>>>,
    rng: Arc<Mutex<Option<StdRng>>>,
    /// First calls answered: failed with a 500, and answered too late.
    failed: Arc<std::sync::atomic::AtomicU32>,
    slow: Arc<std::sync::atomic::AtomicU32>,
}

async fn gateway_charge(
    axum::extract::State(g): axum::extract::State<FlakyGateway>,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    use std::sync::atomic::Ordering::SeqCst;
    let known = g.charged.lock().unwrap().contains_key(&key);
    let mut roll: u32 = g.rng.lock().unwrap().as_mut().map_or(99, |r| r.random_range(0..100));
    // The first failure of each kind comes for sure, so the test always shows both.
    if !known && g.failed.load(SeqCst) == 0 {
        roll = 0;
    } else if !known && g.slow.load(SeqCst) == 0 {
        roll = 20;
    }
    if !known && roll < 15 {
        g.failed.fetch_add(1, SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"code": "oops"}})));
    }
    *g.charged.lock().unwrap().entry(key.clone()).or_default() += 1;
    if !known && roll < 30 {
        g.slow.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(800)).await; // payd gave up after 300 ms
    }
    (StatusCode::OK, axum::Json(json!({"id": format!("gw_{key}"), "status": "succeeded"})))
}

#[tokio::test]
async fn a_provider_failing_30_percent_and_receivers_failing_half_still_keep_the_promise() {
    let gateway = FlakyGateway::default();
    *gateway.rng.lock().unwrap() = Some(StdRng::seed_from_u64(seed()));
    let router =
        axum::Router::new().route("/v1/charges", axum::routing::post(gateway_charge)).with_state(gateway.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    let app = TestApp::spawn_with(
        &[],
        &[
            ("PAYD_PROVIDERS__ACME__BASE_URL", gateway_url.as_str()),
            ("PAYD_PROVIDERS__ACME__SECRET", "gw"),
            ("PAYD_PROVIDERS__ACME__TIMEOUT", "300ms"),
            ("PAYD_PAYMENTS__RETRY_SCHEDULE", "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"),
            ("PAYD_WEBHOOKS__RETRY_SCHEDULE", "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"),
        ],
    )
    .await;
    let receivers = [Receiver::start().await, Receiver::start().await];
    let mut secrets = Vec::new();
    for r in &receivers {
        r.fail_randomly(50);
        secrets.push(app.add_endpoint(&r.url).await.1);
    }
    let method = app.payment_method("acme", "tok_visa").await;
    let ids = burst(&app, "flaky", 40, &method).await;
    wait_succeeded(&app, &ids).await;

    // The gateway's own ledger stands in for the sandbox's.
    let charged = gateway.charged.lock().unwrap().clone();
    let values: Vec<String> = charged.keys().map(|k| format!("('{k}')")).collect();
    let ledger = if values.is_empty() {
        "SELECT NULL::text AS key WHERE false".to_owned()
    } else {
        format!("SELECT key FROM (VALUES {}) AS v(key)", values.join(","))
    };
    let pairs: Vec<(&Receiver, &str)> = receivers.iter().zip(secrets.iter().map(String::as_str)).collect();
    assert_promise_kept(&app, &ids, &pairs, &ledger).await;
    // The faults happened: 500s, answers after payd's timeout, and payments
    // whose key the gateway was asked for again (and charged once for).
    let (failed, slow) = (gateway.failed.load(Ordering::SeqCst), gateway.slow.load(Ordering::SeqCst));
    assert!(failed > 0 && slow > 0, "{failed} failed and {slow} slow first calls");
    let charged = gateway.charged.lock().unwrap().clone();
    assert_eq!(charged.len(), ids.len(), "one charge per payment: {charged:?}");
    assert!(charged.values().any(|calls| *calls >= 2), "no key was asked for again: {charged:?}");
    let sent = receivers.iter().map(|r| r.all().len()).sum::<usize>();
    assert!(sent > 2 * 2 * ids.len(), "the receivers did fail some deliveries ({sent} requests)");
    app.stop().await;
}
