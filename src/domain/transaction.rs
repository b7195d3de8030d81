//! Transactions: one per money movement of a payment, and attempts: one per
//! provider call of a transaction.

use super::text::text_enum;

text_enum! {
    /// What a transaction does with the money.
    pub enum TransactionKind ("transaction type") {
        /// Reserve the amount (`capture: false`).
        Authorize = "authorize",
        /// Take (part of) an authorized amount.
        Capture = "capture",
        /// Charge and capture at once.
        Purchase = "purchase",
        /// Release an authorization.
        Void = "void",
        /// Give money back.
        Refund = "refund",
        /// The cardholder's bank took money back (recorded, no provider call).
        Chargeback = "chargeback",
        /// A chargeback the merchant won back.
        ChargebackReversal = "chargeback_reversal",
    }
}

impl TransactionKind {
    /// The charge of a payment: a purchase, or an authorization to capture later.
    pub fn charge(capture: bool) -> Self {
        if capture { Self::Purchase } else { Self::Authorize }
    }

    /// True for the payment's charge (purchase or authorization).
    pub fn is_charge(self) -> bool {
        matches!(self, Self::Purchase | Self::Authorize)
    }
}

text_enum! {
    /// Where a transaction is.
    pub enum TransactionStatus ("transaction status") {
        /// Accepted; the provider's answer is awaited.
        Pending = "pending",
        /// A provider call's outcome is not known (a timeout, a connection
        /// lost after sending, a 5xx): the money may have moved. The provider
        /// is asked (`payments.inquiry_schedule`); an operator settles what
        /// stays unknown.
        Unknown = "unknown",
        /// Done.
        Succeeded = "succeeded",
        /// Not done.
        Failed = "failed",
        /// Dropped before it reached the provider.
        Canceled = "canceled",
    }
}

text_enum! {
    /// Where one provider call is.
    pub enum AttemptStatus ("attempt status") {
        /// Waiting to run (now or at `scheduled_at`).
        Scheduled = "scheduled",
        /// Claimed by a worker; the provider call is in flight.
        Running = "running",
        /// The provider answered with success.
        Succeeded = "succeeded",
        /// The provider answered with a failure.
        Failed = "failed",
        /// It will never run.
        Canceled = "canceled",
        /// Parked by an operator's hold (a provider outage): it does not run
        /// until the hold is released, which schedules it again.
        Held = "held",
    }
}

text_enum! {
    /// Where an operator's hold is.
    pub enum HoldStatus ("hold status") {
        /// Matching attempts are parked as they come due.
        Active = "active",
        /// Released: its attempts were scheduled again.
        Released = "released",
    }
}
