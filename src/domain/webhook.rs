//! Webhook endpoints and deliveries: their states.

use super::text::text_enum;

text_enum! {
    /// Whether an endpoint gets deliveries.
    pub enum EndpointStatus ("endpoint status") {
        /// Gets deliveries.
        Enabled = "enabled",
        /// Gets none (by its owner, a 410, or failing for too long).
        Disabled = "disabled",
    }
}

text_enum! {
    /// Where one event's delivery to one endpoint is.
    pub enum DeliveryStatus ("delivery status") {
        /// Not delivered yet; due at `next_attempt_at`.
        Pending = "pending",
        /// A 2xx was recorded.
        Succeeded = "succeeded",
        /// Given up.
        Failed = "failed",
    }
}
