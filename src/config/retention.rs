//! `[retention]` (contract §13): how long events and webhook attempts are
//! kept before the scheduler purges them in small batches.

use std::time::Duration;

use serde::Deserialize;

use super::parse::duration;

/// `[retention]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Events older than this (and their deliveries) are purged, once none
    /// of their deliveries is pending.
    #[serde(deserialize_with = "duration")]
    pub events: Duration,
    /// Delivery attempt log rows older than this are purged.
    #[serde(deserialize_with = "duration")]
    pub webhook_attempts: Duration,
}
