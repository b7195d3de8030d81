//! `Prefer: wait=N`: a request that waits for its payment to leave `pending`.
//!
//! The code that commits a status change rings `payd_payment_status` with the
//! payment's id (see [`crate::db::notify`]), whichever process made it; the
//! ids reach every process as coalesced NOTIFYs. One listener
//! per api process fans those out to the waiting requests over a broadcast
//! channel; a request re-reads its payment only when woken for its id (or
//! once a second, in case a notification was lost while the listener
//! reconnected). No request polls the database in a tight loop.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::{ApiError, ErrorCode};
use crate::db::payments::{self as store, Payment};
use crate::domain::{PaymentId, PaymentStatus, Viewer};

use crate::db::notify::PAYMENT_STATUS as CHANNEL;
/// Longest wait a client may ask for (contract §4).
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting request looks again without a notification.
const RECHECK: Duration = Duration::from_secs(1);

/// Status changes of payments, as this process hears them.
#[derive(Clone)]
pub struct PaymentWatch {
    tx: broadcast::Sender<String>,
}

impl PaymentWatch {
    /// Starts listening; stops with `shutdown`.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let watch = Self { tx: tx.clone() };
        tokio::spawn(async move {
            tokio::select! {
                () = listen(pool, tx) => {}
                () = shutdown.cancelled() => {}
            }
        });
        watch
    }

    /// Waits until the payment is no longer `pending` or `timeout` passes;
    /// answers the payment as it is then.
    pub async fn wait(
        &self,
        ctx: &Ctx,
        viewer: &Viewer,
        id: &PaymentId,
        timeout: Duration,
    ) -> Result<Payment, ApiError> {
        // Subscribe before reading, so a change between the read and the
        // wait is not missed.
        let mut rx = self.tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut conn = ctx.db.acquire().await?;
            let row =
                store::find_visible(&mut conn, viewer, id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
            let settled = row.status != PaymentStatus::Pending;
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(store::view(&mut conn, row).await?);
            }
            drop(conn);
            let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
            loop {
                tokio::select! {
                    got = rx.recv() => match got {
                        Ok(changed) if changed != id.as_str() => continue,
                        // Ours, or too many to tell (lagged): look again.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep_until(recheck).await;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(recheck) => break,
                }
            }
        }
    }
}

/// Forwards notifications until the process stops, reconnecting as needed.
async fn listen(pool: PgPool, tx: broadcast::Sender<String>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "payment watch: cannot listen yet");
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "payment watch: LISTEN failed");
            tokio::time::sleep(RECHECK).await;
            continue;
        }
        loop {
            match listener.recv().await {
                // No receiver is fine: nobody waits right now.
                Ok(n) => {
                    for id in n.payload().split(',') {
                        drop(tx.send(id.to_owned()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "payment watch: connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Parses a `Prefer` header's `wait=N` (seconds, at most 30); other
/// preferences are ignored, as RFC 7240 asks.
pub fn parse_prefer(header: &str) -> Result<Option<Duration>, ApiError> {
    for pref in header.split([',', ';']) {
        let pref = pref.trim();
        let Some((name, value)) = pref.split_once('=') else { continue };
        if !name.trim().eq_ignore_ascii_case("wait") {
            continue;
        }
        let secs: u64 = value.trim().trim_matches('"').parse().map_err(|_| bad_wait())?;
        let wait = Duration::from_secs(secs);
        if wait > MAX_WAIT {
            return Err(bad_wait());
        }
        return Ok(Some(wait));
    }
    Ok(None)
}

fn bad_wait() -> ApiError {
    ApiError::new(
        400,
        ErrorCode::PreferInvalid,
        format!("Prefer: wait=N takes whole seconds from 0 to {}", MAX_WAIT.as_secs()),
    )
    .with_param("Prefer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_wait_is_parsed_and_bounded() {
        assert_eq!(parse_prefer("wait=5").unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(parse_prefer("respond-async, wait=30").unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(parse_prefer("return=minimal").unwrap(), None);
        assert_eq!(parse_prefer("Wait = 0").unwrap(), Some(Duration::ZERO));
        for bad in ["wait=31", "wait=-1", "wait=abc", "wait=1.5"] {
            assert_eq!(parse_prefer(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
