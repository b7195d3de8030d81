//! Event types sent to webhook endpoints.

use super::text::text_enum;

text_enum! {
    /// The kinds of event payd emits. Receivers must ignore types they do not know.
    #[allow(clippy::enum_variant_names, reason = "the wire names say payment.* too")]
    pub enum EventType ("event type") {
        /// A payment was accepted.
        PaymentCreated = "payment.created",
        /// The provider waits for the customer to authenticate (3-D Secure).
        PaymentRequiresAction = "payment.requires_action",
        /// A `capture: false` payment was authorized and waits for a capture.
        PaymentRequiresCapture = "payment.requires_capture",
        /// A payment was charged (for a two-stage payment: its first capture).
        PaymentSucceeded = "payment.succeeded",
        /// A payment failed for good.
        PaymentFailed = "payment.failed",
        /// A payment was canceled.
        PaymentCanceled = "payment.canceled",
        /// A refund succeeded (one event per refund).
        PaymentRefunded = "payment.refunded",
        /// A provider call of a payment failed; `data.attempt` says whether
        /// and when it is tried again.
        PaymentAttemptFailed = "payment.attempt_failed",
        /// An endpoint was disabled (never sent to that endpoint).
        WebhookEndpointDisabled = "webhook_endpoint.disabled",
        /// A delivery used up its retries.
        WebhookDeliveryExhausted = "webhook_delivery.exhausted",
    }
}
