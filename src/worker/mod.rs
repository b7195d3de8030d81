//! The worker role: consumes the work queue with manual acks and bounded
//! prefetch, runs each attempt, and acks only after its outcome is committed.
//! A message that cannot be parsed is dead-lettered with `x-payd-error`, once.

pub mod attempt;
pub mod outcome;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queue::Amqp;
use crate::queue::messages::{ATTEMPTS_DEAD_QUEUE, ATTEMPTS_QUEUE, WorkMessage};
pub use attempt::AttemptRunner;

/// Runs until `shutdown`, reconnecting with backoff when the broker goes away.
/// On shutdown it stops consuming and finishes the messages in hand.
pub async fn run(runner: Arc<AttemptRunner>, amqp: Arc<Amqp>, prefetch: u16, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&runner, &amqp, prefetch, &shutdown, &tracker).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "worker: broker connection lost");
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
    tracing::debug!("worker stopped");
}

async fn consume(
    runner: &Arc<AttemptRunner>,
    amqp: &Arc<Amqp>,
    prefetch: u16,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), lapin::Error> {
    let channel = amqp.channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            amqp.name(ATTEMPTS_QUEUE).as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Unacked deliveries in flight finish and ack on this channel;
                // anything not yet started returns to the queue when it closes.
                tracker.close();
                tracker.wait().await;
                let _ = channel.close(200, "shutdown".into()).await;
                return Ok(());
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let (runner, amqp) = (runner.clone(), amqp.clone());
                    // Prefetch bounds how many run at once.
                    tracker.spawn(async move { handle(&runner, &amqp, delivery).await });
                }
                Some(Err(e)) => return Err(e),
                None => return Err(lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                    lapin::ChannelState::Closed, "consumer stream ended",
                ))),
            },
        }
    }
}

async fn handle(runner: &AttemptRunner, amqp: &Amqp, delivery: Delivery) {
    let message: WorkMessage = match serde_json::from_slice(&delivery.data) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "worker: unparseable message; dead-lettering");
            dead_letter(amqp, &delivery, "message_invalid").await;
            return;
        }
    };
    match message {
        WorkMessage::RunAttempt { attempt_id } => match runner.run(&attempt_id).await {
            Ok(()) => {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            Err(e) => {
                // Nothing was committed; the message goes back for another try.
                tracing::warn!(attempt_id = %attempt_id, error = format!("{e:#}"), "worker: attempt failed; requeueing");
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
            }
        },
    }
}

/// Publishes a copy to the dead-letter queue with the reason, then acks the
/// original. A crash in between leaves a duplicate in the dead queue, never a loop.
async fn dead_letter(amqp: &Amqp, delivery: &Delivery, code: &str) {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-payd-error".into(), AMQPValue::LongString(code.into()));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(headers);
    let published = async {
        amqp.publisher()
            .await?
            .basic_publish(
                "".into(),
                amqp.name(ATTEMPTS_DEAD_QUEUE).as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await?
            .await
    };
    match published.await {
        Ok(_) => {
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            // Let the broker dead-letter it instead of redelivering.
            tracing::warn!(error = %e, "worker: dead-letter publish failed; rejecting");
            let _ = delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
        }
    }
}
