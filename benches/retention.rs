//! Retention under load: does purging a million old rows raise the
//! latency of the deliveries being sent meanwhile?
//!
//! `cargo bench --bench retention -- [EVENTS] [RUNS]` (defaults 50000 old
//! events, 2 runs of each kind). Each run makes a fresh database with 10
//! endpoints on local receivers and seeds it with EVENTS old events (40
//! days, past the default `retention.events` of 30 days), each with its 10
//! succeeded deliveries and one attempt log row per delivery: EVENTS × 21
//! rows (50,000 → 1,050,000). Then the dispatcher and a scheduler run in
//! processes of their own while 100 events/s (1,000 deliveries/s) are
//! committed here for 15 s, and the latency from commit to receiver is
//! measured, as in `benches/webhooks.rs`. In a "purging" run the scheduler
//! has the default retention, so it purges the old rows throughout the
//! measurement; in a "baseline" run its retention is ten years and it
//! purges nothing. The kinds alternate, so both see the same machine.

mod support;

use std::time::Duration;

use sqlx::PgPool;
use support::fanout::{Arrivals, dispatcher, fresh, latency, payd_role, receivers, stop};

const ENDPOINTS: usize = 10;
const RATE: usize = 100;

/// Seeds `events` copies of one real event, 40 days old, each with one
/// succeeded delivery per endpoint and one attempt log row per delivery.
async fn seed_old(pool: &PgPool, payment: &str, events: usize) {
    let first = payd::testing::record_payment_events(pool, payment, 1, 1).await.unwrap().remove(0);
    let mut left = events;
    while left > 0 {
        let n = left.min(10_000) as i64;
        sqlx::query(
            "WITH e AS (
                 INSERT INTO events (id, merchant_id, livemode, type, payment_id, data, created_at)
                 SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), merchant_id, livemode, type, payment_id,
                     data, now() - interval '40 days'
                 FROM events, generate_series(1, $2) WHERE id = $1
                 RETURNING id, merchant_id, created_at),
             d AS (
                 INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
                 SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, w.id, 'succeeded', 1,
                     NULL, e.created_at
                 FROM e JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id
                 RETURNING id, created_at)
             INSERT INTO webhook_delivery_attempts (delivery_id, status_code, error, duration_ms, attempted_at)
             SELECT id, 204, NULL, 3, created_at FROM d",
        )
        .bind(&first)
        .bind(n)
        .execute(pool)
        .await
        .unwrap();
        left -= n as usize;
    }
    // The one recent event this was copied from stays: it is not old.
}

async fn old_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events WHERE created_at < now() - interval '30 days')
              + (SELECT count(*) FROM webhook_deliveries WHERE created_at < now() - interval '30 days')
              + (SELECT count(*) FROM webhook_delivery_attempts WHERE attempted_at < now() - interval '30 days')",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let num = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (events, runs) = (num(0, 50_000), num(1, 2));
    payd::install_crypto();
    payd::telemetry::init(payd::config::LogFormat::Text, "warn,sqlx=error");
    let arrivals = Arrivals::default();
    let urls = receivers(ENDPOINTS, &arrivals).await;
    let mut p99 = [Vec::new(), Vec::new()];
    for run in 0..runs * 2 {
        let purging = run % 2 == 1;
        let (db, pool, payment) = fresh(&urls).await;
        seed_old(&pool, &payment, events).await;
        let seeded = old_rows(&pool).await;
        let keep = if purging { "30d" } else { "3650d" };
        let prefix = format!("payd_bench_{}.", uuid::Uuid::new_v4().simple());
        let scheduler = payd_role(
            "scheduler",
            &db.url,
            &[
                ("PAYD_RETENTION__EVENTS", keep),
                ("PAYD_RETENTION__WEBHOOK_ATTEMPTS", keep),
                ("PAYD_AMQP__PREFIX", &prefix),
            ],
        );
        let child = dispatcher(&db.url);
        tokio::time::sleep(Duration::from_secs(1)).await; // listening, connected
        let l = latency(&pool, &payment, &arrivals, ENDPOINTS, RATE, 15).await;
        let left = old_rows(&pool).await;
        stop(child);
        stop(scheduler);
        let kind = if purging { "purging " } else { "baseline" };
        println!(
            "{kind}: {} old rows, {} purged during the run; latency at {} deliveries/s: p50 {:.2} ms, p90 {:.2} ms, \
             p99 {:.2} ms, max {:.1} ms ({} samples)",
            seeded,
            seeded - left,
            RATE * ENDPOINTS,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            l.samples
        );
        p99[usize::from(purging)].push(l.p99);
        pool.close().await;
        db.drop_db().await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (base, purge) = (median(&mut p99[0]), median(&mut p99[1]));
    println!("p99 while purging / baseline (medians of {runs}): {:.2} ({purge:.2} / {base:.2} ms)", purge / base);
}
