//! A consumer loop shared by payd's queues: manual acks, bounded prefetch,
//! reconnect with backoff when the broker goes away, and on shutdown stop
//! taking messages and finish the ones in hand. Handlers ack or nack each
//! delivery themselves, only after its effects are committed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Amqp;

/// Handles one delivery, acking or nacking it.
pub trait Handler: Send + Sync + 'static {
    /// Processes the delivery; must settle it (ack, nack or reject).
    fn handle(&self, delivery: Delivery) -> impl Future<Output = ()> + Send;
}

/// Consumes `queue` (base name) until `shutdown`.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    amqp: Arc<Amqp>,
    queue: &'static str,
    prefetch: u16,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&handler, &amqp, queue, prefetch, &shutdown, &tracker).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, queue, retry_in = ?backoff, "consumer: broker connection lost");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::debug!(queue, "consumer stopped");
}

async fn consume<H: Handler>(
    handler: &Arc<H>,
    amqp: &Amqp,
    queue: &'static str,
    prefetch: u16,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), lapin::Error> {
    let channel = amqp.channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            amqp.name(queue).as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Deliveries in hand finish and settle on this channel;
                // anything not yet started returns to the queue when it closes.
                tracker.close();
                tracker.wait().await;
                let _ = channel.close(200, "shutdown".into()).await;
                return Ok(());
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let handler = handler.clone();
                    // Prefetch bounds how many run at once.
                    tracker.spawn(QUEUE.scope(queue, async move {
                        let started = std::time::Instant::now();
                        handler.handle(delivery).await;
                        crate::observe::handled(queue, started.elapsed());
                    }));
                }
                Some(Err(e)) => return Err(e),
                None => return Err(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                    lapin::ChannelState::Closed, "consumer stream ended",
                ))),
            },
        }
    }
}

tokio::task_local! {
    /// The queue the current delivery came from, for the metrics of how it settled.
    static QUEUE: &'static str;
}

fn settled(result: &'static str) {
    crate::observe::consumed(QUEUE.try_with(|q| *q).unwrap_or("unknown"), result);
}

/// Acks a delivery whose effects are committed.
pub async fn ack(delivery: &Delivery) {
    settled("ack");
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        // The channel died: the broker redelivers, and the claims make that harmless.
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

/// Returns a delivery to the queue after a pause (nothing was committed).
pub async fn requeue(delivery: &Delivery) {
    settled("requeue");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
}

/// Publishes a copy to `dead_queue` (base name) with header
/// `x-payd-error: <code>`, then acks the original. A crash in between leaves
/// a duplicate in the dead queue, never a loop.
pub async fn dead_letter(amqp: &Amqp, delivery: &Delivery, dead_queue: &str, code: &str) {
    settled("dead_letter");
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-payd-error".into(), AMQPValue::LongString(code.into()));
    let mut props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(ct) = delivery.properties.content_type() {
        props = props.with_content_type(ct.clone());
    }
    if let Some(id) = delivery.properties.message_id() {
        props = props.with_message_id(id.clone());
    }
    let published = async {
        amqp.publisher()
            .await?
            .basic_publish(
                "".into(),
                amqp.name(dead_queue).as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await?
            .await
    };
    match published.await {
        Ok(_) => {
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %e, "ack failed; the message will be redelivered");
            }
        }
        Err(e) => {
            // Let the broker dead-letter it instead of redelivering.
            tracing::warn!(error = %e, "dead-letter publish failed; rejecting");
            let _ = delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
        }
    }
}
