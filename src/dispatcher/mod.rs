//! The dispatcher role: claims due webhook deliveries from Postgres, sends
//! them signed, and records each attempt. A delivery is done only when a 2xx
//! is recorded; a crash after sending and before recording means one more
//! send with the same `webhook-id` (at least once, as promised).

mod delivery;
mod limits;
mod recovery;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhookSettings;
use crate::db::dispatch;
use crate::db::notify::Waiter;
use crate::domain::{EndpointId, EventId};
use crate::faults::Faults;
use delivery::Sender;
use limits::Limits;

/// Poll interval when no notification arrives.
const IDLE: Duration = Duration::from_millis(500);
/// The shortest time between two claims (each is a statement, whatever it
/// takes).
const SPACING: Duration = Duration::from_millis(2);

/// Runs until `shutdown`; finishes the sends in flight before returning.
pub async fn run(
    pool: PgPool,
    settings: WebhookSettings,
    secrets: Arc<crate::secretbox::SecretBox>,
    faults: Faults,
    shutdown: CancellationToken,
) {
    tokio::spawn(recovery::run(pool.clone(), faults.clone(), shutdown.clone()));
    let sender = match Sender::new(pool.clone(), settings.clone(), secrets, faults) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "dispatcher: cannot build the HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let limits = Arc::new(Limits::new(settings.endpoint_concurrency, settings.endpoint_concurrency_max));
    let finished = Arc::new(Notify::new());
    let tracker = TaskTracker::new();
    // A claimed row becomes due again after this, should this process die
    // mid-send: a send (address check + request) takes at most 2 × timeout.
    let lease = settings.timeout * 2 + Duration::from_secs(5);
    let mut waiter = Waiter::new(&pool, crate::db::notify::DELIVERIES, IDLE).await;
    // Retries come due and dead dispatchers' leases run out with no ring.
    let mut tick = tokio::time::interval(IDLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    // Whether the last claim may have left due deliveries behind.
    let mut more = true;
    // The events a ring named since the last claim, when that is all there
    // is to claim.
    let mut named: Vec<EventId> = Vec::new();
    'claims: while !shutdown.is_cancelled() {
        // Claims at most every SPACING: rings closer together than that
        // share one claim (a lone one is served at once).
        tokio::time::sleep_until(last + SPACING).await;
        last = tokio::time::Instant::now();
        let free = slots.available_permits();
        if free > 0 {
            let events = std::mem::take(&mut named);
            match claim(&pool, free, lease, &limits, &events).await {
                Ok((claimed, left_behind)) => {
                    more = left_behind;
                    let mut over = Vec::new();
                    for d in claimed {
                        if !limits.enter(&d.endpoint_id) {
                            over.push(d);
                            continue;
                        }
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let (sender, limits, finished) = (sender.clone(), limits.clone(), finished.clone());
                        tracker.spawn(async move {
                            let endpoint = d.endpoint_id.clone();
                            // The endpoint's slot is free once it answered:
                            // recording does not involve it, and the row
                            // stays leased until recorded.
                            sender
                                .send(d, |answer| {
                                    limits.leave(&endpoint, answer);
                                    finished.notify_one();
                                })
                                .await;
                            // Its slot of the process is free once recorded.
                            drop(permit);
                            finished.notify_one();
                        });
                    }
                    if !over.is_empty()
                        && let Err(e) = dispatch::unclaim(&pool, &over).await
                    {
                        tracing::warn!(error = %e, "dispatcher: giving back deliveries failed; they are due after their lease");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dispatcher: claiming deliveries failed"),
            }
        }
        // The next claim waits for a reason: new deliveries (a ring), time
        // (retries, expired leases), or, when the last claim left some
        // behind, room for a batch worth a statement: a claim's cost is
        // mostly fixed, so one for every finished send would cost more
        // than the sends.
        loop {
            let free = slots.available_permits();
            let in_flight = settings.concurrency - free;
            if more && free >= (in_flight / 4).clamp(1, 64) {
                continue 'claims;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break 'claims,
                ids = waiter.wait() => {
                    // Named events only, when nothing else waits: the cheap claim.
                    if !more {
                        named = ids.iter().filter_map(|id| EventId::parse(id)).collect();
                    }
                    continue 'claims;
                }
                _ = tick.tick() => continue 'claims,
                _ = finished.notified() => {}
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::debug!("dispatcher stopped");
}

/// Claims up to `free` due deliveries within each endpoint's room (of
/// `events` only, when it names some); answers them, and whether the claim
/// may have left due ones behind (it took all it could, or all the room of
/// an endpoint, or an endpoint had none).
async fn claim(
    pool: &PgPool,
    free: usize,
    lease: Duration,
    limits: &Limits,
    events: &[EventId],
) -> Result<(Vec<dispatch::ClaimedDelivery>, bool), sqlx::Error> {
    let started = std::time::Instant::now();
    let room: HashMap<EndpointId, usize> = limits.room().into_iter().collect();
    let pairs: Vec<(EndpointId, usize)> = room.iter().map(|(e, n)| (e.clone(), *n)).collect();
    let (limit, initial) = (free as i64, limits.initial());
    let mut conn = pool.acquire().await?;
    let claimed = if events.is_empty() {
        dispatch::claim_due(&mut conn, limit, lease, initial, &pairs).await?
    } else {
        dispatch::claim_events(&mut conn, events, limit, lease, initial, &pairs).await?
    };
    drop(conn);
    crate::observe::delivery_claim(claimed.len(), started.elapsed());
    let mut taken: HashMap<&EndpointId, usize> = HashMap::new();
    for d in &claimed {
        *taken.entry(&d.endpoint_id).or_default() += 1;
    }
    // An endpoint that took all its room, or had none, may have more due.
    let filled = |(e, n): (&&EndpointId, &usize)| *n >= room.get(*e).copied().unwrap_or(limits.initial());
    let left_behind = claimed.len() >= free || taken.iter().any(filled) || room.values().any(|n| *n == 0);
    Ok((claimed, left_behind))
}
