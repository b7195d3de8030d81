//! The scheduler role: hands attempts whose worker died back to the queue
//! (after their lease), re-enqueues due attempts whose message went missing,
//! and purges expired idempotency keys. Every step is a guarded UPDATE with
//! SKIP LOCKED, so any number of schedulers may run.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{attempts, idempotency, outbox};
use crate::domain::WorkMessage;
use crate::domain::messages::ATTEMPTS_QUEUE;

/// How often the scheduler looks.
const TICK: Duration = Duration::from_millis(500);
/// Rows per pass.
const BATCH: i64 = 500;
/// Ticks between readings of the outbox and due-attempt gauges (5 s).
const GAUGE_EVERY: u64 = 10;

/// Reads the deployment-wide gauges: the outbox's backlog and lag, the
/// scheduled attempts that are due, and what operators alert on (holds,
/// unknown transactions, disabled endpoints).
async fn gauges(pool: &PgPool) -> Result<(), sqlx::Error> {
    let (pending, lag) = outbox::backlog(pool).await?;
    crate::observe::outbox(pending, lag);
    crate::observe::attempts_due(attempts::due_count(pool).await?);
    let g = crate::db::operators::gauges(pool).await?;
    crate::observe::operator_gauges(
        g.attempts_held,
        g.holds_active,
        g.oldest_hold_seconds,
        g.transactions_unknown,
        g.oldest_unknown_seconds,
        g.endpoints_disabled,
    );
    Ok(())
}

/// Runs until `shutdown`.
pub async fn run(pool: PgPool, requeue_after: Duration, shutdown: CancellationToken) {
    let mut ticks = 0u64;
    loop {
        if let Err(e) = tick(&pool, requeue_after, ticks.is_multiple_of(7200)).await {
            tracing::warn!(error = format!("{e:#}"), "scheduler pass failed; retrying");
        }
        if ticks.is_multiple_of(GAUGE_EVERY)
            && let Err(e) = gauges(&pool).await
        {
            tracing::debug!(error = %e, "scheduler: reading the gauges failed");
        }
        ticks += 1;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    tracing::debug!("scheduler stopped");
}

/// Delivery attempt log rows purged per statement; the statements are small
/// and spaced, so deliveries never queue behind a purge.
const RETENTION_BATCH: i64 = 500;
/// Events purged per statement: each takes its deliveries (and their
/// attempts, by cascade) with it, about ten rows per event and endpoint.
const RETENTION_EVENTS_BATCH: i64 = 100;
/// The pause between purge statements. The purge competes with deliveries
/// for the same cores and disks, not for locks: its pace, not its batch
/// size alone, keeps the delivery p99 where it was (benches/retention.rs).
const RETENTION_PAUSE: Duration = Duration::from_millis(100);
/// How often retention looks for old rows.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Purges old events and webhook attempts (contract §13) until `shutdown`.
pub async fn retain(pool: PgPool, settings: crate::config::RetentionSettings, shutdown: CancellationToken) {
    loop {
        match retention_pass(&pool, &settings, &shutdown).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "retention: old rows purged"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed; retried later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
        }
    }
}

/// Purges in batches until nothing old is left; answers how many rows.
pub async fn retention_pass(
    pool: &PgPool,
    settings: &crate::config::RetentionSettings,
    shutdown: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    use crate::db::retention;
    let mut total = 0;
    while !shutdown.is_cancelled() {
        let n = retention::purge_attempts(pool, settings.webhook_attempts, RETENTION_BATCH).await?
            + retention::purge_events(pool, settings.events, RETENTION_EVENTS_BATCH).await?;
        total += n;
        if n == 0 {
            break;
        }
        tokio::time::sleep(RETENTION_PAUSE).await;
    }
    Ok(total)
}

/// One pass; answers how many attempts were enqueued.
pub async fn tick(pool: &PgPool, requeue_after: Duration, purge: bool) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let mut ids = attempts::release_expired(&mut tx, BATCH).await?;
    for id in &ids {
        tracing::warn!(attempt_id = %id, "attempt lease expired (worker died?); running it again");
    }
    ids.extend(attempts::take_due(&mut tx, requeue_after, BATCH).await?);
    for attempt_id in &ids {
        outbox::enqueue(&mut tx, ATTEMPTS_QUEUE, &WorkMessage::run(attempt_id)).await?;
    }
    if purge {
        idempotency::purge_expired(&mut tx).await?;
    }
    tx.commit().await?;
    if !ids.is_empty() {
        crate::db::notify::ring(pool, crate::db::notify::OUTBOX);
    }
    Ok(ids.len())
}
