//! The worker role: consumes the work queue (attempts to run) and the command
//! queue (payment commands from queue producers), acking only after the
//! effects are committed. A message that cannot be parsed is dead-lettered
//! with `x-payd-error`, once.

mod attempt;
pub(crate) mod commands;
mod group_commit;

use lapin::message::Delivery;

use crate::domain::WorkMessage;
use crate::domain::messages::ATTEMPTS_DEAD_QUEUE;
use crate::queue::Amqp;
use crate::queue::consumer::{self, Handler};
pub use attempt::AttemptRunner;
pub use commands::CommandConsumer;

/// Runs attempts from the work queue.
pub struct AttemptHandler {
    /// Runs one attempt.
    pub runner: AttemptRunner,
    /// For dead-lettering.
    pub amqp: std::sync::Arc<Amqp>,
    /// Provider calls in flight (`payments.calls_in_flight`).
    pub calls: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Handler for AttemptHandler {
    async fn handle(&self, delivery: Delivery) {
        if consumer::last_delivery(&delivery) {
            // The scheduler enqueues a due attempt again: nothing is lost.
            tracing::warn!("worker: the broker's delivery limit is reached; dead-lettering");
            consumer::dead_letter(&self.amqp, &delivery, ATTEMPTS_DEAD_QUEUE, "delivery_limit").await;
            return;
        }
        let message: WorkMessage = match serde_json::from_slice(&delivery.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "worker: unparseable message; dead-lettering");
                consumer::dead_letter(&self.amqp, &delivery, ATTEMPTS_DEAD_QUEUE, "message_invalid").await;
                return;
            }
        };
        match message {
            WorkMessage::RunAttempt { attempt_id } => {
                // Taken before the claim: a claimed attempt always has its
                // slot, and a full worker leaves further messages unacked
                // (the prefetch then holds them back at the broker).
                let Ok(slot) = self.calls.clone().acquire_owned().await else { return };
                let mut hold = consumer::Hold::default();
                let call = loop {
                    match self.runner.claim(&attempt_id).await {
                        Ok(call) => break call,
                        Err(e) => {
                            // Nothing was committed; held and tried again (Postgres may be away).
                            tracing::warn!(attempt_id = %attempt_id, error = format!("{e:#}"), "worker: claim failed; retrying");
                            if consumer::Hold::worn_out(&delivery) {
                                // The scheduler enqueues the attempt again while it is due.
                                let code = "attempt_failed";
                                return consumer::dead_letter(&self.amqp, &delivery, ATTEMPTS_DEAD_QUEUE, code).await;
                            }
                            if !hold.wait(&self.amqp, &delivery).await {
                                return;
                            }
                        }
                    }
                };
                // The claim's lease keeps the attempt from here on (see
                // `AttemptRunner::claim`): the message is done with.
                consumer::ack(&delivery).await;
                if let Some(call) = call
                    && let Err(e) = self.runner.complete(call).await
                {
                    // The lease ends and the scheduler hands the attempt
                    // back; the provider answers the repeated call from its
                    // idempotency record.
                    tracing::warn!(attempt_id = %attempt_id, error = format!("{e:#}"), "worker: outcome not committed; the attempt runs again after its lease");
                }
                drop(slot);
            }
        }
    }
}
