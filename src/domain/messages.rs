//! Bodies of the messages payd puts on its own work queue, and the names of
//! its queues. Tagged by `type`, so a rolling deploy can add variants while
//! old workers dead-letter what they do not know instead of crashing.

use serde::{Deserialize, Serialize};

use super::ids::AttemptId;

/// The work queue, without the prefix.
pub const ATTEMPTS_QUEUE: &str = "payd.attempts";
/// Where work messages that cannot be parsed go, without the prefix.
pub const ATTEMPTS_DEAD_QUEUE: &str = "payd.attempts.dead";

/// The exchange queue producers publish commands to (topic), without the prefix.
pub const COMMANDS_EXCHANGE: &str = "payd.commands";
/// The topic exchange every event is published to with `amqp.publish_events`
/// (routing key `<merchant_id>.<event type>`).
pub const EVENTS_EXCHANGE: &str = "payd.events";
/// payd's command queue, bound to the exchange with `#`, without the prefix.
pub const COMMANDS_QUEUE: &str = "payd.commands.intake";
/// Commands that cannot be accepted, without the prefix.
pub const COMMANDS_DEAD_QUEUE: &str = "payd.commands.dead";

/// A message on the work queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WorkMessage {
    /// Run a scheduled attempt (claim it first; it may be done already).
    #[serde(rename = "attempt.run")]
    RunAttempt {
        /// The attempt.
        attempt_id: AttemptId,
    },
}

impl WorkMessage {
    /// The message that runs `attempt_id`, as the outbox stores it.
    pub fn run(attempt_id: &AttemptId) -> serde_json::Value {
        serde_json::json!({"type": "attempt.run", "attempt_id": attempt_id})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged() {
        let id = AttemptId::generate();
        let m = WorkMessage::RunAttempt { attempt_id: id.clone() };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v, serde_json::json!({"type": "attempt.run", "attempt_id": id.as_str()}));
        assert_eq!(WorkMessage::run(&id), v);
        assert_eq!(serde_json::from_value::<WorkMessage>(v).unwrap(), m);
        assert!(serde_json::from_str::<WorkMessage>(r#"{"type":"attempt.explode"}"#).is_err());
    }
}
