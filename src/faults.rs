//! Fault injection for crash tests: at a named point the process aborts on
//! the spot, as `kill -9` would (no unwinding, no acks, no commits).

use std::sync::Arc;

/// The configured crash points (`faults.crash_at`); empty in normal operation.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    points: Arc<Vec<String>>,
}

impl Faults {
    /// Faults at these points.
    pub fn new(points: Vec<String>) -> Self {
        if !points.is_empty() {
            tracing::warn!(?points, "FAULT INJECTION ENABLED: this process will abort at these points");
        }
        Self { points: Arc::new(points) }
    }

    /// Aborts the process if `point` is configured.
    pub fn crash_point(&self, point: &str) {
        if self.points.iter().any(|p| p == point) {
            tracing::error!(point, "fault injection: aborting");
            std::process::abort();
        }
    }
}
