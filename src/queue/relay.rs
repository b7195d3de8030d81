//! The outbox relay: publishes committed outbox rows with publisher confirms,
//! then deletes them. A crash before the delete publishes a row twice, which
//! the consumers' claims make harmless; a crash before the publish leaves the
//! row for the next pass. Several relays may run: rows are taken with
//! SKIP LOCKED.
//!
//! With `amqp.publish_events`, the outbox also holds one row per recorded
//! event ([`outbox::EVENTS`]); it is published to the topic exchange
//! `payd.events` with routing key `<merchant_id>.<event type>`, the body
//! of its webhook and the event id as `message_id` (at least once, like the
//! rest: a consumer dedupes on the id).

use std::sync::Arc;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Amqp;
use crate::db;
use crate::db::notify::Waiter;
use crate::db::outbox::{self, OutboxRow};
use crate::domain::messages::EVENTS_EXCHANGE;
use crate::faults::{CrashPoint, Faults};

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
pub async fn run(pool: PgPool, amqp: Arc<Amqp>, faults: Faults, shutdown: CancellationToken) {
    let mut waiter = Waiter::new(&pool, crate::db::notify::OUTBOX, IDLE).await;
    let mut last = tokio::time::Instant::now();
    loop {
        // Passes at most every SPACING: rings closer together than that
        // share one pass (a lone ring is served at once).
        tokio::time::sleep_until(last + SPACING).await;
        last = tokio::time::Instant::now();
        match publish_pending(&pool, &amqp, &faults).await {
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
pub async fn publish_pending(pool: &PgPool, amqp: &Amqp, faults: &Faults) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let n = publish_batch(pool, amqp, faults).await?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}

async fn publish_batch(pool: &PgPool, amqp: &Amqp, faults: &Faults) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = outbox::take(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let channel = amqp.publisher().await?;
    let mut confirms = Vec::with_capacity(rows.len());
    let (events, work): (Vec<&OutboxRow>, Vec<&OutboxRow>) = rows.iter().partition(|r| r.queue == outbox::EVENTS);
    for row in work {
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
    if !events.is_empty() {
        let ids: Vec<&str> = events.iter().filter_map(|r| r.payload["event_id"].as_str()).collect();
        let exchange = amqp.name(EVENTS_EXCHANGE);
        for event in db::events::to_publish(&mut tx, &ids).await? {
            let (id, kind) = (event.id.as_str(), event.kind.as_str());
            let body = crate::webhooks::event_body(id, kind, event.created_at, event.livemode, &event.data);
            let props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(id.into())
                .with_type(kind.into());
            // Not mandatory: an events exchange nobody has bound a queue
            // to yet is not an error.
            let routing_key = format!("{}.{kind}", event.merchant_id);
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await?;
            confirms.push(confirm);
        }
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
    if !events.is_empty() {
        faults.crash_point(CrashPoint::RelayAfterPublish);
    }
    crate::observe::publish_batch(started.elapsed());
    for row in &rows {
        crate::observe::published(&row.queue, 1);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    outbox::remove(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(rows.len())
}
