//! Waking loops on `NOTIFY`: a committed outbox row or delivery notifies its
//! channel, so the relay and the dispatcher react within milliseconds. A poll
//! interval covers notifications lost while the listener reconnects.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// Waits for notifications on one channel, at most a poll interval at a time.
pub struct Waiter {
    pool: PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
    poll: Duration,
}

impl Waiter {
    /// Listens on `channel`; without a listener (Postgres down) it just polls.
    pub async fn new(pool: &PgPool, channel: &'static str, poll: Duration) -> Self {
        let mut w = Self { pool: pool.clone(), channel, listener: None, poll };
        w.listener = w.listen().await;
        w
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(self.channel).await.ok()?;
        Some(l)
    }

    /// Returns on a notification or after the poll interval.
    pub async fn wait(&mut self) {
        match &mut self.listener {
            Some(l) => {
                if let Ok(Err(_)) = tokio::time::timeout(self.poll, l.recv()).await {
                    // The listener reconnects on its next call; don't spin meanwhile.
                    tokio::time::sleep(self.poll).await;
                }
            }
            None => {
                tokio::time::sleep(self.poll).await;
                self.listener = self.listen().await;
            }
        }
    }
}
