//! The recovery worker (contract §13): works through running recoveries in
//! batches. Each batch commits with its progress, so a dispatcher killed
//! mid-recovery leaves it to the next one (its row lock is released), which
//! goes on from the last committed batch.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{notify, recoveries};
use crate::faults::{CrashPoint, Faults};

/// Rows re-queued per batch: small enough that a batch holds no lock for
/// long and delivery p99 is left alone.
const BATCH: i64 = 200;
/// How often it looks for work when there is none.
const IDLE: Duration = Duration::from_millis(500);

/// Runs until `shutdown`.
pub async fn run(pool: PgPool, faults: Faults, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let step = recoveries::step(&pool, BATCH, || faults.crash_point(CrashPoint::RecoveryBeforeCommit)).await;
        match step {
            Ok(true) => {
                notify::ring(&pool, notify::DELIVERIES);
                continue;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "recovery batch failed; retried"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(IDLE) => {}
        }
    }
}
