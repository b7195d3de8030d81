//! Webhook dispatcher benchmark: deliveries per second from a backlog of
//! queued events to local receivers, and the latency from the state change
//! (the event's commit) to the receiver's 2xx when not saturated.
//!
//! `cargo bench --bench webhooks -- [EVENTS] [ENDPOINTS] [RATE]`
//! (defaults 10000 events, 10 endpoints, 100 events/s for the latency phase).
//! Needs PostgreSQL (PAYD_TEST_DATABASE_URL, default
//! postgres://postgres:postgres@127.0.0.1:5432); creates and drops its own database.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use payd::app::{self, Role};
use sqlx::PgPool;
use support::{BenchDb, percentile, rss_kib};

type Arrivals = Arc<Mutex<HashMap<String, Vec<time::OffsetDateTime>>>>;

async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> StatusCode {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    arrivals.lock().unwrap().entry(id).or_default().push(time::OffsetDateTime::now_utc());
    StatusCode::NO_CONTENT
}

/// Inserts `n` events (each fanned out to every endpoint) in batches.
async fn queue_events(pool: &PgPool, payment: &str, n: usize) {
    payd::testing::record_payment_events(pool, payment, n, 500).await.unwrap();
}

async fn delivered(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let events = args.first().copied().unwrap_or(10_000);
    let endpoints = args.get(1).copied().unwrap_or(10);
    let rate = args.get(2).copied().unwrap_or(100);
    payd::install_crypto();
    payd::telemetry::init(payd::config::LogFormat::Text, "warn");

    let db = BenchDb::create().await;
    let settings = support::settings(&[
        ("PAYD_ENV", "bench"),
        ("PAYD_DATABASE__URL", db.url.as_str()),
        ("PAYD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("PAYD_HTTP__LISTEN", "127.0.0.1:0"),
    ]);
    app::migrate(&settings).await.unwrap();
    let pool = PgPool::connect(&db.url).await.unwrap();

    // Receivers and endpoints.
    let arrivals: Arrivals = Arc::default();
    let merchant = payd::testing::create_merchant(&pool, "Bench").await.unwrap();
    for _ in 0..endpoints {
        let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(arrivals.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.ok() });
        payd::testing::add_endpoint(&pool, &merchant.id, url, &["*"]).await.unwrap();
    }
    // A realistic event body: a payment object.
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

    // Phase 1: throughput from a backlog.
    queue_events(&pool, &payment, events).await;
    let total = (events * endpoints) as i64;
    println!("queued {events} events x {endpoints} endpoints = {total} deliveries; RSS {} MiB", rss_kib() / 1024);
    let start = Instant::now();
    let running = app::start(settings.clone(), &[Role::Dispatcher]).await.unwrap();
    let mut peak_rss = 0;
    loop {
        peak_rss = peak_rss.max(rss_kib());
        let done = delivered(&pool).await;
        if done >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "throughput: {total} deliveries in {secs:.1} s = {:.0} deliveries/s; peak RSS of the process {} MiB",
        total as f64 / secs,
        peak_rss / 1024
    );

    // Phase 2: latency at a steady, unsaturated rate.
    arrivals.lock().unwrap().clear();
    let latency_events = (rate * 10).min(events);
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut created: HashMap<String, time::OffsetDateTime> = HashMap::new();
    let t0 = Instant::now();
    for i in 0..latency_events {
        let id = payd::testing::record_payment_events(&pool, &payment, 1, 1).await.unwrap().remove(0);
        created.insert(id, time::OffsetDateTime::now_utc());
        let next = t0 + gap * (i as u32 + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    let want = latency_events * endpoints;
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().values().map(Vec::len).sum::<usize>() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat: Vec<f64> = Vec::with_capacity(want);
    for (id, times) in arrivals.lock().unwrap().iter() {
        if let Some(c) = created.get(id) {
            lat.extend(times.iter().map(|t| (*t - *c).as_seconds_f64() * 1000.0));
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency at {rate} events/s ({} deliveries/s), commit -> receiver: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        rate * endpoints,
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        lat.len()
    );

    running.stop().await;
    pool.close().await;
    db.drop_db().await;
}
