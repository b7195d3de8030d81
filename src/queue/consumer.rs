//! A consumer loop shared by payd's queues: manual acks, bounded prefetch,
//! reconnect with backoff when the broker goes away, and on shutdown stop
//! taking messages and finish the ones in hand. Handlers ack or nack each
//! delivery themselves, only after its effects are committed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Amqp;

/// How long a consumer takes one delivery at a time after a message it
/// could not parse.
const CAREFUL: Duration = Duration::from_secs(30);

/// Handles one delivery, acking or nacking it.
pub trait Handler: Send + Sync + 'static {
    /// Processes the delivery; must settle it (ack, nack or reject).
    fn handle(&self, delivery: Delivery) -> impl Future<Output = ()> + Send;

    /// Where a message lapin cannot parse goes, with its `x-payd-error`
    /// code (queues fed by producers payd does not control); `None` leaves
    /// such a message to the queue's delivery limit.
    fn unparseable(&self) -> Option<(&'static str, &'static str)> {
        None
    }
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
    // After an unparseable message, one delivery at a time for a while: the
    // bad one then comes alone at the head of the queue, and only it, not
    // the good ones prefetched beside it, spends its delivery limit.
    let mut careful_until: Option<std::time::Instant> = None;
    while !shutdown.is_cancelled() {
        let careful = careful_until.is_some_and(|t| std::time::Instant::now() < t);
        let window = if careful { 1 } else { prefetch };
        match consume(&handler, &amqp, queue, window, &shutdown, &tracker).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ParsingError(_)) => {
                // A message lapin cannot parse (a producer's property that is
                // not UTF-8) took the connection down and comes back at the
                // head of the queue: reconnect at once, so the queue's
                // delivery limit disposes of it within a second or two.
                tracing::warn!(error = %e, queue, "consumer: a message could not be parsed; reconnecting");
                careful_until = Some(std::time::Instant::now() + CAREFUL);
                if let Some((dead_queue, code)) = handler.unparseable() {
                    let taken =
                        super::raw::take_unparseable(amqp.broker(), &amqp.name(queue), &amqp.name(dead_queue), code)
                            .await;
                    match taken {
                        Ok(super::raw::Taken::DeadLettered) => settled_in(queue, "dead_letter"),
                        Ok(other) => tracing::info!(queue, ?other, "consumer: the head of the queue was not taken"),
                        Err(e) => tracing::warn!(error = %e, queue, "consumer: the unparseable message stays"),
                    }
                }
                crate::observe::consumed(queue, "unparseable");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
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
                    // Prefetch bounds how many are unsettled at once (a
                    // handler that acks early bounds its own work).
                    tracker.spawn(QUEUE.scope(queue, SHUTDOWN.scope(shutdown.clone(), async move {
                        let started = std::time::Instant::now();
                        handler.handle(delivery).await;
                        crate::observe::handled(queue, started.elapsed());
                    })));
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
    /// The queue the current delivery came from (base name), for the metrics
    /// of how it settled and for queueing a fresh copy of it.
    static QUEUE: &'static str;
    /// The consumer's shutdown, which ends a [`Hold`].
    static SHUTDOWN: CancellationToken;
}

/// How long a delivery is held and retried in place before a fresh copy of
/// it is queued: well under RabbitMQ's `consumer_timeout` (30 minutes by
/// default), which would close the channel and count a delivery.
const HOLD: Duration = Duration::from_secs(10);
/// Fresh copies after which [`Hold::worn_out`] says so.
const MAX_RETRIES: i64 = 60;
/// The header counting how many fresh copies of a command came before.
const RETRIES_HEADER: &str = "x-payd-retries";

/// A delivery that payd cannot handle for its own reasons (Postgres is
/// unreachable, a duplicate is in flight, its dead letter is refused). Nack-and-requeue would spend
/// the queue's delivery limit and, after a couple of minutes of outage,
/// dead-letter a command nobody refused; instead the delivery is held and
/// retried in place with a growing pause, and every [`HOLD`] a fresh copy
/// goes to the back of the queue (confirmed, then the original acked) with
/// a fresh delivery count. A crash in between leaves two copies, which the
/// message id makes one.
pub struct Hold {
    since: std::time::Instant,
    pause: Duration,
}

impl Default for Hold {
    fn default() -> Self {
        Self { since: std::time::Instant::now(), pause: Duration::from_millis(100) }
    }
}

impl Hold {
    /// Whether so many fresh copies came before this delivery (about ten
    /// minutes of trouble) that it is given up on when the trouble is not
    /// Postgres being away.
    pub fn worn_out(delivery: &Delivery) -> bool {
        Self::retries(delivery) >= MAX_RETRIES
    }

    /// How many fresh copies came before this delivery.
    fn retries(delivery: &Delivery) -> i64 {
        match delivery.properties.headers().as_ref().and_then(|h| h.inner().get(RETRIES_HEADER)) {
            Some(AMQPValue::LongLongInt(n)) => *n,
            _ => 0,
        }
    }

    /// Waits before the next try. `false`: stop trying, the delivery is no
    /// longer in hand (a fresh copy was queued, or payd is stopping and the
    /// broker gets it back when the channel closes).
    pub async fn wait(&mut self, amqp: &Amqp, delivery: &Delivery) -> bool {
        let shutdown = SHUTDOWN.try_with(CancellationToken::clone).unwrap_or_default();
        if self.since.elapsed() >= HOLD {
            settled("recycle");
            match recycle(amqp, delivery).await {
                Ok(()) => return false,
                // The broker is there but refused the copy: still in hand,
                // held for another while rather than left unsettled.
                Err(Published::Refused(why)) => {
                    tracing::warn!(why, "the broker refused a fresh copy; the delivery stays held");
                    self.since = std::time::Instant::now();
                }
                // The broker is away too: the channel is gone with it, and
                // the delivery comes back when the consumer reconnects.
                Err(Published::Failed(e)) => {
                    tracing::warn!(error = %e, "could not queue a fresh copy; the broker redelivers it");
                    return false;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(self.pause) => {}
        }
        self.pause = (self.pause * 2).min(Duration::from_secs(2));
        true
    }
}

/// Queues a copy of `delivery` at the back of its own queue, then acks it.
async fn recycle(amqp: &Amqp, delivery: &Delivery) -> Result<(), Published> {
    let queue = QUEUE.try_with(|q| *q).unwrap_or_default();
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(RETRIES_HEADER.into(), AMQPValue::LongLongInt(Hold::retries(delivery) + 1));
    let props = delivery.properties.clone().with_headers(headers);
    publish_confirmed(amqp, queue, &delivery.data, props).await?;
    delivery.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(Published::Failed)
}

/// Why a confirmed publish did not happen.
#[derive(Debug)]
enum Published {
    /// The broker answered and did not take it (a nack, or a return: no such queue).
    Refused(&'static str),
    /// No answer: the connection or channel failed.
    Failed(lapin::Error),
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Published::Refused(why) => f.write_str(why),
            Published::Failed(e) => e.fmt(f),
        }
    }
}

/// Publishes to `queue` (base name) through the default exchange and waits
/// for the broker's confirm: a nack (the queue refused it) or a return (no
/// such queue: `mandatory`) is an error, not a publish.
async fn publish_confirmed(amqp: &Amqp, queue: &str, body: &[u8], props: BasicProperties) -> Result<(), Published> {
    let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
    let confirmation = async {
        amqp.publisher()
            .await?
            .basic_publish("".into(), amqp.name(queue).as_str().into(), options, body, props)
            .await?
            .await
    };
    match confirmation.await.map_err(Published::Failed)? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(Published::Refused("the broker returned the message: no such queue")),
        Confirmation::Nack(_) => Err(Published::Refused("the broker refused the message")),
        // The publisher channel is in confirm mode: no answer is no publish.
        Confirmation::NotRequested => Err(Published::Refused("the broker did not confirm the message")),
    }
}

/// Whether the broker is about to dead-letter this delivery itself (its
/// queue's delivery limit, after crashes or lost channels): payd
/// dead-letters it first, so that no dead letter keeps its `authorization`.
pub fn last_delivery(delivery: &Delivery) -> bool {
    let count = match delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count")) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        _ => 0,
    };
    count + 1 >= super::DELIVERY_LIMIT
}

fn settled(result: &'static str) {
    settled_in(QUEUE.try_with(|q| *q).unwrap_or("unknown"), result);
}

fn settled_in(queue: &'static str, result: &'static str) {
    crate::observe::consumed(queue, result);
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
/// `x-payd-error: <code>` and without `authorization`, then acks the original. A crash in between leaves
/// a duplicate in the dead queue, never a loop.
pub async fn dead_letter(amqp: &Amqp, delivery: &Delivery, dead_queue: &str, code: &str) {
    settled("dead_letter");
    // A dead letter is read by whoever operates the queue: it keeps no key.
    let kept = delivery.properties.headers().as_ref().map(|h| h.inner().clone()).unwrap_or_default();
    let mut headers: FieldTable = kept
        .into_iter()
        .filter(|(k, _)| !k.as_str().eq_ignore_ascii_case("authorization"))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into();
    headers.insert("x-payd-error".into(), AMQPValue::LongString(code.into()));
    let mut props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(ct) = delivery.properties.content_type() {
        props = props.with_content_type(ct.clone());
    }
    if let Some(id) = delivery.properties.message_id() {
        props = props.with_message_id(id.clone());
    }
    // Not rejected nor requeued when the publish fails: the broker's own
    // dead letter (a reject, or the delivery limit a requeue spends) would
    // keep the producer's key. Held and retried in place instead; after a
    // while a fresh copy goes back to its queue (see [`Hold`]) and is
    // dead-lettered by payd on its next delivery.
    let mut hold = Hold::default();
    loop {
        match publish_confirmed(amqp, dead_queue, &delivery.data, props.clone()).await {
            Ok(()) => {
                if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                    tracing::warn!(error = %e, "ack failed; the message will be redelivered");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dead-letter publish failed; held and retried");
                if !hold.wait(amqp, delivery).await {
                    return;
                }
            }
        }
    }
}
