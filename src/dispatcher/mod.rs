//! The dispatcher role: claims due webhook deliveries from Postgres, sends
//! them signed, and records each attempt. A delivery is done only when a 2xx
//! is recorded; a crash after sending and before recording means one more
//! send with the same `webhook-id` (at least once, as promised).

pub mod delivery;
pub mod signing;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhookSettings;
use crate::db::notify::Waiter;
use crate::db::{events, webhooks};
use delivery::Sender;

/// Poll interval when no notification arrives.
const IDLE: Duration = Duration::from_millis(500);

/// Runs until `shutdown`; finishes the sends in flight before returning.
pub async fn run(pool: PgPool, settings: WebhookSettings, shutdown: CancellationToken) {
    let sender = match Sender::new(pool.clone(), settings.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "dispatcher: cannot build the HTTP client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let tracker = TaskTracker::new();
    // A claimed row becomes due again after this, should this process die mid-send.
    let lease = settings.timeout + Duration::from_secs(30);
    let mut waiter = Waiter::new(&pool, events::NOTIFY_CHANNEL, IDLE).await;
    while !shutdown.is_cancelled() {
        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match webhooks::claim_due(&pool, free as i64, lease).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatcher: claiming deliveries failed");
                    Vec::new()
                }
            }
        };
        let got = claimed.len();
        for d in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let sender = sender.clone();
            tracker.spawn(async move {
                sender.send(d).await;
                drop(permit);
            });
        }
        if got == 0 || got < free {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = waiter.wait() => {}
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::debug!("dispatcher stopped");
}
