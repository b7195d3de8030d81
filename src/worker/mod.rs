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
                let mut hold = consumer::Hold::default();
                loop {
                    match self.runner.run(&attempt_id).await {
                        Ok(()) => return consumer::ack(&delivery).await,
                        Err(e) => {
                            // Nothing was committed; held and tried again (Postgres may be away).
                            tracing::warn!(attempt_id = %attempt_id, error = format!("{e:#}"), "worker: attempt failed; retrying");
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
                }
            }
        }
    }
}
