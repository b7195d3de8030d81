//! The outbox relay: publishes committed outbox rows with publisher confirms,
//! then deletes them. A crash before the delete publishes a row twice, which
//! the consumers' claims make harmless; a crash before the publish leaves the
//! row for the next pass. Several relays may run: rows are taken with
//! SKIP LOCKED.

use std::sync::Arc;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Amqp;
use crate::db::notify::Waiter;
use crate::db::outbox;

/// Longest wait for the broker to confirm a batch.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
/// Rows published per transaction.
const BATCH: i64 = 256;
/// Poll interval when no notification arrives (and the retry pace when the
/// broker or the database is down).
const IDLE: Duration = Duration::from_millis(500);
/// The shortest time between two passes: each costs Postgres a transaction
/// and RabbitMQ a confirm round, whatever it carries.
const SPACING: Duration = Duration::from_millis(2);

/// Runs until `shutdown`.
pub async fn run(pool: PgPool, amqp: Arc<Amqp>, shutdown: CancellationToken) {
    let mut waiter = Waiter::new(&pool, crate::db::notify::OUTBOX, IDLE).await;
    let mut last = tokio::time::Instant::now();
    loop {
        // Passes at most every SPACING: rings closer together than that
        // share one pass (a lone ring is served at once).
        tokio::time::sleep_until(last + SPACING).await;
        last = tokio::time::Instant::now();
        match publish_pending(&pool, &amqp).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "outbox relay: publish failed; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = waiter.wait() => {}
        }
    }
    tracing::debug!("outbox relay stopped");
}

/// Publishes everything pending; answers how many rows went out.
pub async fn publish_pending(pool: &PgPool, amqp: &Amqp) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let n = publish_batch(pool, amqp).await?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}

async fn publish_batch(pool: &PgPool, amqp: &Amqp) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = outbox::take(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let channel = amqp.publisher().await?;
    let mut confirms = Vec::with_capacity(rows.len());
    for row in &rows {
        let body = serde_json::to_vec(&row.payload)?;
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(row.id.to_string().into());
        let confirm = channel
            .basic_publish(
                "".into(),
                amqp.name(&row.queue).as_str().into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &body,
                props,
            )
            .await?;
        confirms.push(confirm);
    }
    // Bounded: a confirm from a connection that died half-way may never come;
    // the rows stay in the outbox and the next pass publishes them again.
    let confirmed = async {
        for confirm in confirms {
            let confirmation = confirm.await?;
            if !confirmation.is_ack() {
                anyhow::bail!("broker refused a message (nack)");
            }
            if confirmation.take_message().is_some() {
                anyhow::bail!("broker returned an unroutable message");
            }
        }
        Ok(())
    };
    tokio::time::timeout(CONFIRM_TIMEOUT, confirmed)
        .await
        .map_err(|_| anyhow::anyhow!("publisher confirms timed out"))??;
    crate::observe::publish_batch(started.elapsed());
    for row in &rows {
        crate::observe::published(&row.queue, 1);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    outbox::remove(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(rows.len())
}
