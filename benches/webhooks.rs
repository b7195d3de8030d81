//! Webhook dispatcher benchmark. The dispatcher is the real `payd` binary
//! (`payd serve --role dispatcher`) in a process of its own, as deployed;
//! this process holds the receivers (local axum servers answering 204) and
//! commits the events, as the api and worker processes would.
//!
//! `cargo bench --bench webhooks -- [EVENTS] [ENDPOINTS] [RATE] [BACKLOGS]`
//! (defaults 10000 events, 10 endpoints, 100 events/s, backlogs `100000`;
//! e.g. `-- 10000 10 100 100000,1000000`; backlogs `0` for the latency
//! alone). It prints:
//!
//! 1. pgbench's one-row-insert rate of this run (`scripts/pgbench-insert 16
//!    10`), the machine's commit ceiling to compare with;
//! 2. for each backlog size, into fresh tables, once without and once with
//!    `ANALYZE`: the cost of one claim, the drain rate (every delivery
//!    recorded as succeeded), the CPU the dispatcher and PostgreSQL used per
//!    1,000 deliveries, and the dispatcher's peak RSS;
//! 3. the latency from an event's commit to its receiver at RATE events/s
//!    (RATE × ENDPOINTS deliveries/s) for 10 s.
//!
//! Needs PostgreSQL on this machine (PAYD_TEST_DATABASE_URL, default
//! postgres://postgres:postgres@127.0.0.1:5432); creates and drops its own
//! databases.

mod support;

use std::time::{Duration, Instant};

use sqlx::PgPool;
use support::fanout::{Arrivals, dispatcher, fresh, latency, peak_rss_mib, receivers, stop};
use support::procs::{pgbench_insert, postgres_cpu, usage};

/// Queues `events` copies of one real event (recorded by payd, fanned out
/// to every endpoint), written in bulk as a backlog after an outage would
/// be: with no dispatcher running, and nothing analyzing the tables.
async fn queue_backlog(pool: &PgPool, payment: &str, events: usize) {
    let first = payd::testing::record_payment_events(pool, payment, 1, 1).await.unwrap().remove(0);
    let mut left = events.saturating_sub(1);
    while left > 0 {
        let n = left.min(20_000) as i64;
        sqlx::query(
            "WITH e AS (
                 INSERT INTO events (id, merchant_id, livemode, type, payment_id, data)
                 SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), merchant_id, livemode, type, payment_id, data
                 FROM events, generate_series(1, $2) WHERE id = $1
                 RETURNING id, merchant_id)
             INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
             SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, w.id, 'pending', now()
             FROM e JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id",
        )
        .bind(&first)
        .bind(n)
        .execute(pool)
        .await
        .unwrap();
        left -= n as usize;
    }
}

/// True once no delivery is pending (one probe of the due index: the poll
/// must not cost PostgreSQL what it measures).
async fn drained(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status = 'pending')")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What one drain measured.
struct Drain {
    claim_ms: f64,
    rate: f64,
    cpu_per_1000: Option<(f64, f64)>,
    peak_rss_mib: u64,
}

/// Queues a backlog of about `deliveries` into fresh tables (analyzed when
/// `analyze`) and drains it with a dispatcher process.
async fn drain(urls: &[String], deliveries: usize, analyze: bool) -> Drain {
    let (db, pool, payment) = fresh(urls).await;
    queue_backlog(&pool, &payment, deliveries.div_ceil(urls.len())).await;
    if analyze {
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries").fetch_one(&pool).await.unwrap();
    let claim = payd::testing::claim_cost(&db.url, 64, 11).await.unwrap();
    let pg_before = postgres_cpu();
    let child = dispatcher(&db.url);
    let pid = child.id();
    let start = Instant::now();
    let mut last = (0.0, 0);
    while !drained(&pool).await {
        last = usage(pid).unwrap_or(last);
        assert!(start.elapsed() < Duration::from_secs(1800), "the drain did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu, rss) = usage(pid).unwrap_or(last);
    let pg = pg_before.zip(postgres_cpu()).map(|(a, b)| b - a);
    stop(child);
    pool.close().await;
    db.drop_db().await;
    let per_1000 = |s: f64| s / total as f64 * 1000.0;
    Drain {
        claim_ms: claim.as_secs_f64() * 1000.0,
        rate: total as f64 / secs,
        cpu_per_1000: pg.map(|pg| (per_1000(cpu), per_1000(pg))),
        peak_rss_mib: rss / 1024,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let num = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (events, endpoints, rate) = (num(0, 10_000), num(1, 10), num(2, 100));
    let backlogs: Vec<usize> = args
        .get(3)
        .map_or(vec![events * endpoints], |b| b.split(',').filter_map(|n| n.parse().ok()).filter(|n| *n > 0).collect());
    payd::install_crypto();
    payd::telemetry::init(payd::config::LogFormat::Text, "warn,sqlx=error");

    let pgbench = pgbench_insert(16, 10);
    match pgbench {
        Some(tps) => println!("pgbench (scripts/pgbench-insert 16 10): {tps:.0} tps"),
        None => println!("pgbench: not available"),
    }
    let arrivals = Arrivals::default();
    let urls = receivers(endpoints, &arrivals).await;
    for &size in &backlogs {
        let mut rates = Vec::new();
        for analyze in [false, true] {
            let d = drain(&urls, size, analyze).await;
            let stats = if analyze { "with statistics   " } else { "without statistics" };
            let cpu = d.cpu_per_1000.map_or("n/a".to_owned(), |(ours, pg)| {
                format!("{:.2} CPU-s per 1,000 (dispatcher {ours:.2} + PostgreSQL {pg:.2})", ours + pg)
            });
            let ratio = pgbench.map_or(String::new(), |tps| format!(" = {:.2} × pgbench", d.rate / tps));
            println!(
                "backlog {size}, {stats}: claim {:.2} ms; drain {:.0} deliveries/s{ratio}; {cpu}; peak RSS {} MiB",
                d.claim_ms, d.rate, d.peak_rss_mib
            );
            rates.push(d.rate);
        }
        println!("backlog {size}: without statistics at {:.0} % of the rate with", rates[0] / rates[1] * 100.0);
    }

    // Latency: events committed here, the dispatcher woken from another process.
    let (db, pool, payment) = fresh(&urls).await;
    let child = dispatcher(&db.url);
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(1)).await; // listening, connected
    let l = latency(&pool, &payment, &arrivals, endpoints, rate, 10).await;
    let worst: Vec<String> = l.slowest.iter().map(|(ms, at)| format!("{ms:.0} ms at {at:.1} s")).collect();
    println!(
        "latency at {rate} events/s ({} deliveries/s), commit -> receiver, dispatcher in its own process: \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} samples); dispatcher peak RSS {} MiB",
        rate * endpoints,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        l.samples,
        peak_rss_mib(pid)
    );
    println!("slowest deliveries (latency, committed at): {}", worst.join(", "));
    stop(child);
    pool.close().await;
    db.drop_db().await;
}
