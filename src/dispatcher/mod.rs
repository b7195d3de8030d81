//! The dispatcher role: claims due webhook deliveries from Postgres, sends
//! them signed, and records each attempt. A delivery is done only when a 2xx
//! is recorded; a crash after sending and before recording means one more
//! send with the same `webhook-id` (at least once, as promised).

mod delivery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhookSettings;
use crate::db::dispatch;
use crate::db::notify::Waiter;
use crate::domain::EndpointId;
use crate::faults::Faults;
use delivery::Sender;

/// Poll interval when no notification arrives.
const IDLE: Duration = Duration::from_millis(500);
/// The shortest time between two claims (each is a statement, whatever it
/// takes).
const SPACING: Duration = Duration::from_millis(2);

/// Runs until `shutdown`; finishes the sends in flight before returning.
pub async fn run(pool: PgPool, settings: WebhookSettings, faults: Faults, shutdown: CancellationToken) {
    let sender = match Sender::new(pool.clone(), settings.clone(), faults) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "dispatcher: cannot build the HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let per_endpoint = Arc::new(InFlight::default());
    let finished = Arc::new(Notify::new());
    let tracker = TaskTracker::new();
    // A claimed row becomes due again after this, should this process die
    // mid-send: a send (address check + request) takes at most 2 × timeout.
    let lease = settings.timeout * 2 + Duration::from_secs(5);
    let mut waiter = Waiter::new(&pool, crate::db::notify::DELIVERIES, IDLE).await;
    let mut last = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        // Claims at most every SPACING: sends finishing or rings closer
        // together than that share one claim (a lone one is served at once).
        tokio::time::sleep_until(last + SPACING).await;
        last = tokio::time::Instant::now();
        let free = slots.available_permits();
        let mut full_batch = false;
        if free > 0 {
            let in_flight = per_endpoint.counts();
            match dispatch::claim_due(&pool, free as i64, lease, settings.endpoint_concurrency, &in_flight).await {
                Ok(claimed) => {
                    full_batch = claimed.len() == free;
                    let mut over_cap = Vec::new();
                    for d in claimed {
                        if !per_endpoint.enter(&d.endpoint_id, settings.endpoint_concurrency) {
                            over_cap.push(d);
                            continue;
                        }
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let (sender, per_endpoint, finished) = (sender.clone(), per_endpoint.clone(), finished.clone());
                        tracker.spawn(async move {
                            let endpoint = d.endpoint_id.clone();
                            // The endpoint's slot is free once it answered:
                            // recording does not involve it, and the row
                            // stays leased until recorded.
                            sender
                                .send(d, || {
                                    per_endpoint.leave(&endpoint);
                                    finished.notify_one();
                                })
                                .await;
                            drop(permit);
                        });
                    }
                    if !over_cap.is_empty()
                        && let Err(e) = dispatch::unclaim(&pool, &over_cap).await
                    {
                        tracing::warn!(error = %e, "dispatcher: giving back deliveries failed; they are due after their lease");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dispatcher: claiming deliveries failed"),
            }
        }
        if full_batch {
            continue; // there may be more due right now
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = waiter.wait() => {}
            _ = finished.notified() => {}
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::debug!("dispatcher stopped");
}

/// Sends in flight per endpoint in this process.
#[derive(Default)]
struct InFlight(Mutex<HashMap<EndpointId, usize>>);

impl InFlight {
    /// Counts a send to `endpoint` unless it is at `cap`.
    fn enter(&self, endpoint: &EndpointId, cap: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(endpoint.clone()).or_default();
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, endpoint: &EndpointId) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(endpoint);
            }
        }
    }

    /// The endpoints with sends in flight, and how many.
    fn counts(&self) -> Vec<(EndpointId, usize)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(e, n)| (e.clone(), *n)).collect()
    }
}
