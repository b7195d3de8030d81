//! Waking loops when there is new work: the relay on new outbox rows, the
//! dispatcher on new deliveries, `Prefer: wait` on status changes.
//!
//! Why not `NOTIFY` inside the transactions that write the rows: Postgres
//! serializes the commits of notifying transactions on one global lock held
//! through the WAL flush, which capped intake at about one commit per fsync.
//! Instead, code that committed such rows calls [`ring`] *after* the commit:
//! this wakes this process's waiters at once, and a per-database background
//! task sends one coalesced `NOTIFY` (a transaction without writes, so no
//! flush) for other processes. Waiters also poll, so a ring lost while a
//! listener reconnects (or a process dies between commit and ring) costs
//! latency, never work.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;

/// Committed outbox rows (the relay listens).
pub const OUTBOX: &str = "payd_outbox";
/// Committed webhook deliveries (the dispatcher listens).
pub const DELIVERIES: &str = "payd_deliveries";
/// Payment status changes, payload: payment ids separated by commas
/// (`Prefer: wait` listens).
pub const PAYMENT_STATUS: &str = "payd_payment_status";

/// The shortest time between two NOTIFYs of one channel from this process.
/// Each wakes a backend to send it and every listening backend and process
/// to receive it, which under load costs more than the ring's work
/// (docs/PERFORMANCE.md); spacing them bounds that to 200 a second per
/// channel, for at most 5 ms more latency in other processes (this process
/// is woken at once).
const SPACING: Duration = Duration::from_millis(5);

/// Longest NOTIFY payload sent (Postgres allows just under 8000 bytes).
const PAYLOAD_MAX: usize = 7000;

/// One channel of one database, in this process.
struct Bell {
    /// Wakes this process's waiters.
    local: Notify,
    /// Wakes the broadcaster.
    outgoing: Notify,
    /// Payloads to send (ids); empty means "something changed".
    payloads: Mutex<Vec<String>>,
}

type Key = (String, &'static str);

static BELLS: LazyLock<Mutex<HashMap<Key, Arc<Bell>>>> = LazyLock::new(Mutex::default);

fn key(pool: &PgPool, channel: &'static str) -> Key {
    (super::identity(pool), channel)
}

/// The bell of `channel` on `pool`'s database, with its broadcaster.
fn bell(pool: &PgPool, channel: &'static str) -> Arc<Bell> {
    let key = key(pool, channel);
    let mut bells = BELLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = bells.get(&key) {
        return b.clone();
    }
    let b = Arc::new(Bell { local: Notify::new(), outgoing: Notify::new(), payloads: Mutex::default() });
    bells.insert(key.clone(), b.clone());
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(broadcast(pool.clone(), key, b.clone()));
    }
    b
}

/// Sends the bell's rings as NOTIFYs, coalescing those that pile up while one
/// is sent, on a connection of its own (no wait for the pool, no ping before
/// each: a ring is on the path of every webhook's latency). Ends when the
/// pool is closed.
async fn broadcast(pool: PgPool, key: Key, bell: Arc<Bell>) {
    let channel = key.1;
    let mut conn: Option<PgConnection> = None;
    let mut last = tokio::time::Instant::now() - SPACING;
    loop {
        tokio::select! {
            () = bell.outgoing.notified() => {}
            // Notice a closed pool even when nothing rings.
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                if pool.is_closed() { break } else { continue }
            }
        }
        // A lone ring goes out at once; rings closer together than SPACING
        // wait for the rest of it and go out as one NOTIFY.
        tokio::time::sleep_until(last + SPACING).await;
        last = tokio::time::Instant::now();
        let taken = std::mem::take(&mut *bell.payloads.lock().unwrap_or_else(|e| e.into_inner()));
        let mut payloads = chunks(&taken);
        if payloads.is_empty() {
            payloads.push(String::new());
        }
        for payload in payloads {
            if pool.is_closed() {
                break;
            }
            if conn.is_none() {
                conn = connect(&pool).await;
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(&payload).execute(&mut *c).await
            {
                // Reconnect for the next ring; meanwhile the others poll.
                conn = None;
                tracing::debug!(error = %e, channel, "NOTIFY failed; other processes will poll");
            }
        }
    }
    BELLS.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
}

/// A connection for NOTIFYs, outside the pool, with the pool's options.
async fn connect(pool: &PgPool) -> Option<PgConnection> {
    use sqlx::Connection;
    let options = pool.connect_options();
    match PgConnection::connect_with(&options).await {
        Ok(c) => {
            super::nodelay::set_on_connections_to(options.get_port());
            Some(c)
        }
        Err(e) => {
            tracing::debug!(error = %e, "NOTIFY connection failed; other processes will poll");
            None
        }
    }
}

/// Joins ids with commas into payloads of at most [`PAYLOAD_MAX`] bytes.
fn chunks(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some(last) if last.len() + 1 + id.len() <= PAYLOAD_MAX => {
                last.push(',');
                last.push_str(id);
            }
            _ => out.push(id.clone()),
        }
    }
    out
}

/// After a commit that wrote rows for `channel`'s listeners: wake them.
pub fn ring(pool: &PgPool, channel: &'static str) {
    let b = bell(pool, channel);
    b.local.notify_one();
    b.local.notify_waiters();
    b.outgoing.notify_one();
}

/// [`ring`] with a payload (a payment id) for the listeners to filter on.
pub fn ring_with(pool: &PgPool, channel: &'static str, payload: &str) {
    let b = bell(pool, channel);
    b.payloads.lock().unwrap_or_else(|e| e.into_inner()).push(payload.to_owned());
    b.outgoing.notify_one();
}

/// After a commit that recorded `events` with their deliveries: wakes the
/// dispatchers, naming the events, so those in other processes claim their
/// deliveries by event (a ring without ids makes them claim in general).
pub fn ring_events<'a>(pool: &PgPool, events: impl IntoIterator<Item = &'a str>) {
    let b = bell(pool, DELIVERIES);
    b.payloads.lock().unwrap_or_else(|e| e.into_inner()).extend(events.into_iter().map(str::to_owned));
    b.local.notify_one();
    b.local.notify_waiters();
    b.outgoing.notify_one();
}

/// Waits for rings on one channel (from this process, or NOTIFYs from
/// others), at most a poll interval at a time.
pub struct Waiter {
    pool: PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
    local: Arc<Bell>,
    poll: Duration,
}

impl Waiter {
    /// Listens on `channel`; without a listener (Postgres down) it just polls.
    pub async fn new(pool: &PgPool, channel: &'static str, poll: Duration) -> Self {
        let local = bell(pool, channel);
        let mut w = Self { pool: pool.clone(), channel, listener: None, local, poll };
        w.listener = w.listen().await;
        w
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(self.channel).await.ok()?;
        Some(l)
    }

    /// Returns on a ring, a notification, or after the poll interval;
    /// answers the ids a notification from another process named (none for
    /// a ring of this process, a plain ring, or the poll).
    pub async fn wait(&mut self) -> Vec<String> {
        let local = self.local.clone();
        match &mut self.listener {
            Some(l) => {
                tokio::select! {
                    () = local.local.notified() => {}
                    got = tokio::time::timeout(self.poll, l.recv()) => match got {
                        Ok(Ok(n)) => {
                            return n.payload().split(',').filter(|id| !id.is_empty()).map(str::to_owned).collect();
                        }
                        // The listener reconnects on its next call; don't spin meanwhile.
                        Ok(Err(_)) => tokio::time::sleep(self.poll).await,
                        Err(_) => {}
                    },
                }
            }
            None => {
                tokio::select! {
                    () = local.local.notified() => {}
                    () = tokio::time::sleep(self.poll) => {}
                }
                self.listener = self.listen().await;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_packed_into_bounded_payloads() {
        let ids: Vec<String> = (0..1000).map(|i| format!("pay_{i:032}")).collect();
        let payloads = chunks(&ids);
        assert!(payloads.iter().all(|p| p.len() <= PAYLOAD_MAX));
        let back: Vec<&str> = payloads.iter().flat_map(|p| p.split(',')).collect();
        assert_eq!(back, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(chunks(&[]).is_empty());
    }
}
