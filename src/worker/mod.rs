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
        let message: WorkMessage = match serde_json::from_slice(&delivery.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "worker: unparseable message; dead-lettering");
                consumer::dead_letter(&self.amqp, &delivery, ATTEMPTS_DEAD_QUEUE, "message_invalid").await;
                return;
            }
        };
        match message {
            WorkMessage::RunAttempt { attempt_id } => match self.runner.run(&attempt_id).await {
                Ok(()) => consumer::ack(&delivery).await,
                Err(e) => {
                    // Nothing was committed; the message goes back for another try.
                    tracing::warn!(attempt_id = %attempt_id, error = format!("{e:#}"), "worker: attempt failed; requeueing");
                    consumer::requeue(&delivery).await;
                }
            },
        }
    }
}
