//! Fault injection for crash tests: at a named point the process aborts on
//! the spot, as `kill -9` would (no unwinding, no acks, no commits).

use std::sync::Arc;

/// Where a process can be made to abort (`faults.crash_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// `worker.after_provider_call`: the provider answered, nothing is recorded.
    WorkerAfterProviderCall,
    /// `worker.before_commit`: the outcome is written but not committed.
    WorkerBeforeCommit,
    /// `commands.before_ack`: an AMQP command is committed and replied to, not acked.
    CommandsBeforeAck,
    /// `dispatcher.after_send`: a webhook was sent, its result not recorded.
    DispatcherAfterSend,
    /// `recovery.before_commit`: a recovery's batch is written, not committed.
    RecoveryBeforeCommit,
    /// `relay.after_publish`: an outbox batch is published and confirmed,
    /// its rows not deleted.
    RelayAfterPublish,
}

impl CrashPoint {
    /// Every point.
    pub const ALL: [CrashPoint; 6] = [
        Self::WorkerAfterProviderCall,
        Self::WorkerBeforeCommit,
        Self::CommandsBeforeAck,
        Self::DispatcherAfterSend,
        Self::RecoveryBeforeCommit,
        Self::RelayAfterPublish,
    ];

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkerAfterProviderCall => "worker.after_provider_call",
            Self::WorkerBeforeCommit => "worker.before_commit",
            Self::CommandsBeforeAck => "commands.before_ack",
            Self::DispatcherAfterSend => "dispatcher.after_send",
            Self::RecoveryBeforeCommit => "recovery.before_commit",
            Self::RelayAfterPublish => "relay.after_publish",
        }
    }

    /// Parses the setting's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The configured crash points (`faults.crash_at`); empty in normal operation.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    points: Arc<Vec<CrashPoint>>,
}

impl Faults {
    /// Faults at these points.
    pub fn new(points: Vec<CrashPoint>) -> Self {
        if !points.is_empty() {
            let names: Vec<&str> = points.iter().map(|p| p.as_str()).collect();
            tracing::warn!(?names, "FAULT INJECTION ENABLED: this process will abort at these points");
        }
        Self { points: Arc::new(points) }
    }

    /// Aborts the process if `point` is configured.
    pub fn crash_point(&self, point: CrashPoint) {
        if self.points.contains(&point) {
            tracing::error!(point = point.as_str(), "fault injection: aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_round_trip() {
        for p in CrashPoint::ALL {
            assert_eq!(CrashPoint::parse(p.as_str()), Some(p));
        }
        assert_eq!(CrashPoint::parse("worker.somewhere"), None);
    }
}
