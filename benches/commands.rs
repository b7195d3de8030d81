//! Queue producer benchmark: commands accepted per second from a local lapin
//! producer with publisher confirms, how fast payd drains the backlog (and
//! its memory meanwhile), and the time from publish to the
//! `payment.succeeded` webhook at a steady, unsaturated rate.
//!
//! `cargo bench --bench commands -- [COMMANDS] [RATE]` (defaults 20000 and 50/s).
//! Needs PostgreSQL and RabbitMQ (PAYD_TEST_DATABASE_URL, PAYD_TEST_AMQP_URL).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use payd::app::{self, Role};
use sqlx::PgPool;
use support::{BenchDb, percentile, rss_kib};

type Arrivals = Arc<Mutex<HashMap<String, time::OffsetDateTime>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let now = time::OffsetDateTime::now_utc();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(k) = v["data"]["object"]["external_key"].as_str()
    {
        arrivals.lock().unwrap().insert(k.to_owned(), now);
    }
    StatusCode::NO_CONTENT
}

async fn publish(ch: &Channel, exchange: &str, key: &str, external_key: &str) -> lapin::PublisherConfirm {
    let mut headers = FieldTable::default();
    headers.insert("authorization".into(), AMQPValue::LongString(format!("Bearer {key}").into()));
    let body = serde_json::json!({"type": "payment.create", "data": {
        "amount": 1000, "currency": "USD", "payment_method_id": "pm_test_success", "external_key": external_key}});
    ch.basic_publish(
        exchange.into(),
        "payment.create".into(),
        BasicPublishOptions::default(),
        body.to_string().as_bytes(),
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(external_key.into())
            .with_headers(headers),
    )
    .await
    .unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let commands = args.first().copied().unwrap_or(20_000);
    let rate = args.get(1).copied().unwrap_or(50);
    payd::install_crypto();
    payd::telemetry::init(payd::config::LogFormat::Text, "error");

    let amqp_url =
        std::env::var("PAYD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let db = BenchDb::create().await;
    let prefix = format!("payd_bench_{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let settings = support::settings(&[
        ("PAYD_ENV", "bench"),
        ("PAYD_DATABASE__URL", db.url.as_str()),
        ("PAYD_AMQP__URL", amqp_url.as_str()),
        ("PAYD_AMQP__PREFIX", prefix.as_str()),
        ("PAYD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("PAYD_HTTP__LISTEN", "127.0.0.1:0"),
    ]);
    app::migrate(&settings).await.unwrap();
    let pool = PgPool::connect(&db.url).await.unwrap();
    let merchant = payd::testing::create_merchant(&pool, "Bench").await.unwrap();

    // A receiver subscribed to payment.succeeded.
    let arrivals: Arrivals = Arc::default();
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    payd::testing::add_endpoint(&pool, &merchant.id, url, &["payment.succeeded"]).await.unwrap();

    // The relay declares the topology at start; the worker is not running yet,
    // so phase 1 measures acceptance alone and then the drain of a backlog.
    let relay = app::start(settings.clone(), &[Role::Relay]).await.unwrap();
    let conn = Connection::connect(&amqp_url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let exchange = format!("{prefix}payd.commands");

    let start = Instant::now();
    let mut pending = Vec::with_capacity(1000);
    for i in 0..commands {
        pending.push(publish(&ch, &exchange, &merchant.secret_key, &format!("backlog-{i}")).await);
        if pending.len() == 1000 {
            for c in pending.drain(..) {
                assert!(c.await.unwrap().is_ack());
            }
        }
    }
    for c in pending.drain(..) {
        assert!(c.await.unwrap().is_ack());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "accepted: {commands} commands with publisher confirms in {secs:.1} s = {:.0} commands/s",
        commands as f64 / secs
    );

    let rss_before = rss_kib() / 1024;
    let start = Instant::now();
    let workers = app::start(settings.clone(), &[Role::Worker, Role::Dispatcher]).await.unwrap();
    let mut peak = rss_before;
    loop {
        peak = peak.max(rss_kib() / 1024);
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE status = 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if done as usize >= commands {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "drained: {commands} commands to succeeded payments in {secs:.1} s = {:.0} payments/s; RSS {rss_before} MiB before, peak {peak} MiB",
        commands as f64 / secs
    );

    // Phase 2: publish -> payment.succeeded webhook, at a steady rate.
    let samples = rate * 10;
    let mut published: HashMap<String, time::OffsetDateTime> = HashMap::new();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = Instant::now();
    for i in 0..samples {
        let key = format!("steady-{i}");
        published.insert(key.clone(), time::OffsetDateTime::now_utc());
        assert!(publish(&ch, &exchange, &merchant.secret_key, &key).await.await.unwrap().is_ack());
        tokio::time::sleep_until((t0 + gap * (i as u32 + 1)).into()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while published.keys().any(|k| !arrivals.lock().unwrap().contains_key(k)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = arrivals.lock().unwrap().clone();
    let mut lat: Vec<f64> =
        published.iter().filter_map(|(k, t)| arrived.get(k).map(|a| (*a - *t).as_seconds_f64() * 1000.0)).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency at {rate} commands/s, publish -> payment.succeeded webhook: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        lat.len()
    );

    workers.stop().await;
    relay.stop().await;
    for q in ["payd.attempts", "payd.attempts.dead", "payd.commands.intake", "payd.commands.dead"] {
        let _ = ch.queue_delete(format!("{prefix}{q}").as_str().into(), Default::default()).await;
    }
    let _ = ch.exchange_delete(exchange.as_str().into(), Default::default()).await;
    conn.close(200, "bye".into()).await.ok();
    pool.close().await;
    db.drop_db().await;
}
