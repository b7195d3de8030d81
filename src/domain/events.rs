//! Event types sent to webhook endpoints.

use serde::{Deserialize, Serialize};

/// The kinds of event payd emits. Receivers must ignore types they do not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A payment was accepted.
    #[serde(rename = "payment.created")]
    PaymentCreated,
    /// A `capture: false` payment was authorized and waits for a capture.
    #[serde(rename = "payment.requires_capture")]
    PaymentRequiresCapture,
    /// A payment was charged (for a two-stage payment: its first capture).
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    /// A payment failed for good.
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    /// A payment was canceled.
    #[serde(rename = "payment.canceled")]
    PaymentCanceled,
    /// A refund succeeded (one event per refund).
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
}

impl EventType {
    /// Every type, for validation of `enabled_events`.
    pub const ALL: [EventType; 6] = [
        Self::PaymentCreated,
        Self::PaymentRequiresCapture,
        Self::PaymentSucceeded,
        Self::PaymentFailed,
        Self::PaymentCanceled,
        Self::PaymentRefunded,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentCreated => "payment.created",
            Self::PaymentRequiresCapture => "payment.requires_capture",
            Self::PaymentSucceeded => "payment.succeeded",
            Self::PaymentFailed => "payment.failed",
            Self::PaymentCanceled => "payment.canceled",
            Self::PaymentRefunded => "payment.refunded",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}
