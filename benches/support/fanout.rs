//! What the webhook benchmarks share: local receivers, a fresh database
//! with endpoints and a payment, the dispatcher in a process of its own,
//! and the latency from an event's commit to its receivers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::serve::ListenerExt;
use sqlx::PgPool;

use super::procs::usage;
use super::{BenchDb, percentile};

/// When each webhook arrived, by `webhook-id`.
pub type Arrivals = Arc<Mutex<HashMap<String, Vec<time::OffsetDateTime>>>>;

async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> StatusCode {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    arrivals.lock().unwrap().entry(id).or_default().push(time::OffsetDateTime::now_utc());
    StatusCode::NO_CONTENT
}

/// Local receivers, one per endpoint; answers their URLs.
pub async fn receivers(n: usize, arrivals: &Arrivals) -> Vec<String> {
    let mut urls = Vec::new();
    for _ in 0..n {
        let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(arrivals.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}/hook", listener.local_addr().unwrap()));
        // As a real receiver's server would: no Nagle delay on small answers.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    }
    urls
}

/// A fresh database with its merchant, one endpoint per receiver, and a
/// payment whose events carry a realistic body; answers it with the pool
/// and the payment id.
pub async fn fresh(urls: &[String]) -> (BenchDb, PgPool, String) {
    let db = BenchDb::create().await;
    let settings = super::settings(&[("PAYD_ENV", "bench"), ("PAYD_DATABASE__URL", db.url.as_str())]);
    payd::app::migrate(&settings).await.unwrap();
    let pool = PgPool::connect(&db.url).await.unwrap();
    let merchant = payd::testing::create_merchant(&pool, "Bench").await.unwrap();
    for url in urls {
        payd::testing::add_endpoint(&pool, &merchant.id, url.clone(), &["*"]).await.unwrap();
    }
    let payment: String = sqlx::query_scalar(
        "INSERT INTO payments (id, merchant_id, livemode, amount, currency, status, payment_method_id, provider, method, metadata)
         VALUES ($1, $2, false, 1000, 'USD', 'succeeded', 'pm_test_success', 'sandbox', 'card', '{\"order_id\": \"12345\"}')
         RETURNING id",
    )
    .bind(format!("pay_{}", uuid::Uuid::now_v7().simple()))
    .bind(&merchant.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    (db, pool, payment)
}

/// `payd serve --role <role>` on `url`, its logs at warn, with this
/// process's `PAYD_WEBHOOKS__*` variables (to measure other settings) and
/// `extra` ones.
pub fn payd_role(role: &str, url: &str, extra: &[(&str, &str)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_payd"))
        .args(["serve", "--role", role])
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("PAYD_WEBHOOKS__")))
        .env("PAYD_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("PAYD_ENV", "bench")
        .env("PAYD_DATABASE__URL", url)
        .env("PAYD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("RUST_LOG", "warn,sqlx=error")
        .envs(extra.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the payd binary starts")
}

/// The dispatcher role (see [`payd_role`]).
pub fn dispatcher(url: &str) -> std::process::Child {
    payd_role("dispatcher", url, &[])
}

/// Stops a child with SIGTERM and waits for it.
pub fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// What one latency run measured, in milliseconds.
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
    /// The slowest deliveries: (latency, when in the run it was committed, s).
    pub slowest: Vec<(f64, f64)>,
}

/// Records `rate` events/s of `payment` for `secs` seconds (after one
/// second of the same traffic left out: the dispatcher's first sends open
/// its connections and plan its statements) and measures each delivery
/// from the event's commit to its receiver.
pub async fn latency(
    pool: &PgPool,
    payment: &str,
    arrivals: &Arrivals,
    endpoints: usize,
    rate: usize,
    secs: u32,
) -> Latency {
    let warm = Instant::now();
    for i in 0..rate {
        payd::testing::record_payment_events(pool, payment, 1, 1).await.unwrap();
        tokio::time::sleep_until((warm + Duration::from_secs_f64((i + 1) as f64 / rate as f64)).into()).await;
    }
    let arrived = |a: &Arrivals| a.lock().unwrap().values().map(Vec::len).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived(arrivals) < rate * endpoints && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    arrivals.lock().unwrap().clear();
    let count = rate * secs as usize;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut created: HashMap<String, time::OffsetDateTime> = HashMap::new();
    let t0 = Instant::now();
    let t0_utc = time::OffsetDateTime::now_utc();
    for i in 0..count {
        let id = payd::testing::record_payment_events(pool, payment, 1, 1).await.unwrap().remove(0);
        created.insert(id, time::OffsetDateTime::now_utc());
        tokio::time::sleep_until((t0 + gap * (i as u32 + 1)).into()).await;
    }
    let want = count * endpoints;
    // Only this run's events count: a warm-up delivery arriving late is not one.
    let measured = |a: &Arrivals| {
        a.lock().unwrap().iter().filter(|(id, _)| created.contains_key(*id)).map(|(_, t)| t.len()).sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while measured(arrivals) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat: Vec<f64> = Vec::with_capacity(want);
    // When in the run the slow ones were committed: a tail at the start is
    // warm-up (connections, plans), one spread over the run is not.
    let mut slowest: Vec<(f64, f64)> = Vec::new();
    for (id, times) in arrivals.lock().unwrap().iter() {
        if let Some(c) = created.get(id) {
            let at = (*c - t0_utc).as_seconds_f64();
            for t in times {
                let ms = (*t - *c).as_seconds_f64() * 1000.0;
                lat.push(ms);
                slowest.push((ms, at));
            }
        }
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    slowest.truncate(5);
    lat.sort_by(f64::total_cmp);
    Latency {
        p50: percentile(&lat, 0.5),
        p90: percentile(&lat, 0.9),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or(f64::NAN),
        samples: lat.len(),
        slowest,
    }
}

/// The dispatcher's peak RSS in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    usage(pid).map_or(0, |(_, rss)| rss / 1024)
}
