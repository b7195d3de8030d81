//! The payment state machine. Pure: given where a payment is and what
//! happened, it answers the new state and the event to emit, or a typed
//! refusal. The database applies the answer with `WHERE status = …` guards so
//! that a race can never skip a transition this module forbids.

use super::events::EventType;
use super::money::Amount;
use super::text::text_enum;

text_enum! {
    /// Where a payment is in its life.
    pub enum PaymentStatus ("payment status") {
        /// Accepted; queued, in flight, or waiting for a retry.
        Pending = "pending",
        /// The provider waits for the customer to authenticate (3-D
        /// Secure): `next_action` says how; the outcome follows.
        RequiresAction = "requires_action",
        /// Authorized with `capture: false`; waiting for a capture.
        RequiresCapture = "requires_capture",
        /// Charged.
        Succeeded = "succeeded",
        /// Declined, retries exhausted or retry canceled. Terminal.
        Failed = "failed",
        /// Canceled before it was charged. Terminal.
        Canceled = "canceled",
        /// Some amount refunded; terminal once everything captured is refunded.
        Refunded = "refunded",
    }
}

/// The money on a payment, in minor units. Always the sum of its succeeded
/// (and, for `refund_pending`, pending) transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balances {
    /// What was asked for.
    pub amount: Amount,
    /// Charged so far.
    pub captured: i64,
    /// Refunded so far (succeeded refunds).
    pub refunded: i64,
    /// Refunds accepted but not yet confirmed by the provider.
    pub refund_pending: i64,
    /// Authorized and not captured yet (captures in flight are not).
    pub capturable: i64,
}

impl Balances {
    /// What may still be refunded: captured minus succeeded and pending refunds.
    pub fn refundable(&self) -> i64 {
        self.captured.saturating_sub(self.refunded).saturating_sub(self.refund_pending)
    }
}

/// A refused operation; each maps to one status code of the contract.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 409: the payment is canceled already.
    #[error("payment is already canceled")]
    AlreadyCanceled,
    /// 400: the payment's state does not allow a cancel.
    #[error("a {} payment cannot be canceled", .0.as_str())]
    NotCancelable(PaymentStatus),
    /// 400: a refund needs a succeeded (or partly refunded) payment.
    #[error("a {} payment cannot be refunded", .0.as_str())]
    NotRefundable(PaymentStatus),
    /// 409: everything captured is refunded or being refunded.
    #[error("payment is already fully refunded")]
    FullyRefunded,
    /// 422: more than what is left.
    #[error("refund amount {requested} exceeds the refundable amount {available}")]
    RefundTooLarge {
        /// Asked for.
        requested: i64,
        /// Still refundable.
        available: i64,
    },
    /// 400: nothing to capture.
    #[error("a {} payment has nothing to capture", .0.as_str())]
    NotCapturable(PaymentStatus),
    /// 400: more than is authorized and not captured yet.
    #[error("capture amount {requested} exceeds the capturable amount {available}")]
    CaptureTooLarge {
        /// Asked for.
        requested: i64,
        /// Still capturable.
        available: i64,
    },
    /// 409: this chargeback was reversed already.
    #[error("this chargeback is already reversed")]
    AlreadyReversed,
    /// 400: a provider call for this payment is in flight right now.
    #[error("a provider call for this payment is in flight; retry shortly")]
    Processing,
    /// Internal: an outcome arrived for a payment that no longer expects it
    /// (canceled meanwhile, or already applied). Not a client error.
    #[error("the payment is {} and does not expect this outcome", .0.as_str())]
    Stale(PaymentStatus),
}

/// A state change and the event it emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state the change requires (the SQL guard).
    pub from: PaymentStatus,
    /// The state after the change.
    pub to: PaymentStatus,
    /// The event recorded with it.
    pub event: EventType,
}

/// A charge was confirmed by the provider.
pub fn charge_succeeded(status: PaymentStatus) -> Result<Transition, Refusal> {
    match status {
        PaymentStatus::Pending | PaymentStatus::RequiresAction => {
            Ok(Transition { from: status, to: PaymentStatus::Succeeded, event: EventType::PaymentSucceeded })
        }
        other => Err(Refusal::Stale(other)),
    }
}

/// A success the provider reports after payd settled the payment as failed
/// or canceled (a timeout payd gave up on, a notification that came late):
/// never dropped, since the customer was charged. A purchase becomes
/// `succeeded`, an authorization `requires_capture` (the merchant can then
/// void it by canceling).
pub fn late_success(status: PaymentStatus, authorize: bool) -> Result<Transition, Refusal> {
    match status {
        from @ (PaymentStatus::Failed | PaymentStatus::Canceled) => Ok(if authorize {
            Transition { from, to: PaymentStatus::RequiresCapture, event: EventType::PaymentRequiresCapture }
        } else {
            Transition { from, to: PaymentStatus::Succeeded, event: EventType::PaymentSucceeded }
        }),
        other => Err(Refusal::Stale(other)),
    }
}

/// A charge failed for good (hard decline, retries exhausted, retry canceled).
pub fn charge_failed(status: PaymentStatus) -> Result<Transition, Refusal> {
    match status {
        PaymentStatus::Pending | PaymentStatus::RequiresAction => {
            Ok(Transition { from: status, to: PaymentStatus::Failed, event: EventType::PaymentFailed })
        }
        other => Err(Refusal::Stale(other)),
    }
}

/// The provider authorized a `capture: false` payment: it waits for captures.
pub fn authorize_succeeded(status: PaymentStatus) -> Result<Transition, Refusal> {
    match status {
        PaymentStatus::Pending | PaymentStatus::RequiresAction => Ok(Transition {
            from: status,
            to: PaymentStatus::RequiresCapture,
            event: EventType::PaymentRequiresCapture,
        }),
        other => Err(Refusal::Stale(other)),
    }
}

/// The provider asks for the customer's authentication (3-D Secure) of a
/// pending charge; a repeated ask (a retry, an inquiry) changes nothing.
pub fn action_required(status: PaymentStatus) -> Result<Option<Transition>, Refusal> {
    match status {
        PaymentStatus::Pending => Ok(Some(Transition {
            from: status,
            to: PaymentStatus::RequiresAction,
            event: EventType::PaymentRequiresAction,
        })),
        PaymentStatus::RequiresAction => Ok(None),
        other => Err(Refusal::Stale(other)),
    }
}

/// The merchant cancels: a pending payment is never sent to the provider
/// afterwards; an authorized one, or one waiting for the customer's
/// authentication, is voided at the provider.
pub fn cancel(status: PaymentStatus) -> Result<Transition, Refusal> {
    match status {
        PaymentStatus::Pending | PaymentStatus::RequiresCapture | PaymentStatus::RequiresAction => {
            Ok(Transition { from: status, to: PaymentStatus::Canceled, event: EventType::PaymentCanceled })
        }
        PaymentStatus::Canceled => Err(Refusal::AlreadyCanceled),
        other => Err(Refusal::NotCancelable(other)),
    }
}

/// The merchant asks for a refund of `requested` (default: all that is left).
/// Answers the amount to refund.
pub fn refund(status: PaymentStatus, balances: Balances, requested: Option<Amount>) -> Result<Amount, Refusal> {
    if !matches!(status, PaymentStatus::Succeeded | PaymentStatus::Refunded) {
        return Err(Refusal::NotRefundable(status));
    }
    let available = balances.refundable();
    if available <= 0 {
        return Err(Refusal::FullyRefunded);
    }
    match requested {
        Some(amount) if amount.get() > available => Err(Refusal::RefundTooLarge { requested: amount.get(), available }),
        Some(amount) => Ok(amount),
        // `available` is positive and at most the captured amount, itself an Amount.
        None => Amount::new(available).map_err(|_| Refusal::FullyRefunded),
    }
}

/// The merchant captures `requested` (default: all that is capturable) of
/// an authorized payment. Several partial captures are allowed, also after
/// the first one made the payment `succeeded`, never more than authorized.
pub fn capture(status: PaymentStatus, balances: Balances, requested: Option<Amount>) -> Result<Amount, Refusal> {
    let open = matches!(status, PaymentStatus::RequiresCapture | PaymentStatus::Succeeded | PaymentStatus::Refunded);
    if !open || balances.capturable <= 0 {
        return Err(Refusal::NotCapturable(status));
    }
    match requested {
        Some(amount) if amount.get() > balances.capturable => {
            Err(Refusal::CaptureTooLarge { requested: amount.get(), available: balances.capturable })
        }
        Some(amount) => Ok(amount),
        None => Amount::new(balances.capturable).map_err(|_| Refusal::NotCapturable(status)),
    }
}

/// The provider confirmed a capture. The first one makes the payment
/// `succeeded` (and sends `payment.succeeded`); later ones change amounts only.
pub fn capture_succeeded(status: PaymentStatus) -> Result<Option<Transition>, Refusal> {
    match status {
        PaymentStatus::RequiresCapture => {
            Ok(Some(Transition { from: status, to: PaymentStatus::Succeeded, event: EventType::PaymentSucceeded }))
        }
        PaymentStatus::Succeeded | PaymentStatus::Refunded => Ok(None),
        other => Err(Refusal::Stale(other)),
    }
}

/// The merchant records a chargeback of `amount`: money the cardholder's
/// bank took back. It counts as refunded money, so it is bounded like a
/// refund and leaves the payment `refunded`.
pub fn chargeback(status: PaymentStatus, balances: Balances, amount: Amount) -> Result<PaymentStatus, Refusal> {
    refund(status, balances, Some(amount))?;
    Ok(PaymentStatus::Refunded)
}

/// The status once `refunded` of the captured money is refunded or charged
/// back: `succeeded` again when nothing is (a reversed chargeback).
pub fn status_after_refunds(refunded: i64) -> PaymentStatus {
    if refunded > 0 { PaymentStatus::Refunded } else { PaymentStatus::Succeeded }
}

/// The provider confirmed a refund: the payment is (partly) refunded.
pub fn refund_succeeded(status: PaymentStatus) -> Result<Transition, Refusal> {
    match status {
        PaymentStatus::Succeeded | PaymentStatus::Refunded => {
            Ok(Transition { from: status, to: PaymentStatus::Refunded, event: EventType::PaymentRefunded })
        }
        other => Err(Refusal::Stale(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus::*;

    fn balances(captured: i64, refunded: i64, pending: i64) -> Balances {
        Balances { amount: Amount::new(1000).unwrap(), captured, refunded, refund_pending: pending, capturable: 0 }
    }

    #[test]
    fn statuses_round_trip() {
        for &s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(PaymentStatus::parse("paid"), None);
    }

    #[test]
    fn only_pending_payments_take_charge_outcomes() {
        for &s in PaymentStatus::ALL {
            let ok = charge_succeeded(s);
            let failed = charge_failed(s);
            if matches!(s, Pending | RequiresAction) {
                assert_eq!(ok.unwrap().to, Succeeded);
                assert_eq!(failed.unwrap().to, Failed);
            } else {
                assert_eq!(ok, Err(Refusal::Stale(s)));
                assert_eq!(failed, Err(Refusal::Stale(s)));
            }
        }
    }

    #[test]
    fn cancel_is_allowed_before_any_money_moved() {
        for &s in PaymentStatus::ALL {
            let r = cancel(s);
            match s {
                Pending | RequiresCapture | RequiresAction => assert_eq!(r.unwrap().event, EventType::PaymentCanceled),
                Canceled => assert_eq!(r, Err(Refusal::AlreadyCanceled)),
                other => assert_eq!(r, Err(Refusal::NotCancelable(other))),
            }
        }
    }

    #[test]
    fn refunds_need_a_charged_payment() {
        for s in [Pending, RequiresAction, RequiresCapture, Failed, Canceled] {
            assert_eq!(refund(s, balances(0, 0, 0), None), Err(Refusal::NotRefundable(s)));
        }
    }

    #[test]
    fn refund_amounts_are_bounded_by_what_is_left() {
        let b = balances(1000, 300, 200);
        assert_eq!(b.refundable(), 500);
        assert_eq!(refund(Refunded, b, None).unwrap().get(), 500);
        assert_eq!(refund(Refunded, b, Some(Amount::new(500).unwrap())).unwrap().get(), 500);
        assert_eq!(
            refund(Refunded, b, Some(Amount::new(501).unwrap())),
            Err(Refusal::RefundTooLarge { requested: 501, available: 500 })
        );
        assert_eq!(refund(Refunded, balances(1000, 1000, 0), None), Err(Refusal::FullyRefunded));
        assert_eq!(refund(Succeeded, balances(1000, 600, 400), None), Err(Refusal::FullyRefunded));
    }

    #[test]
    fn captures_are_bounded_by_what_is_authorized() {
        let open = Balances { capturable: 700, ..balances(300, 0, 0) };
        for &s in PaymentStatus::ALL {
            let ok = capture(s, open, None);
            match s {
                RequiresCapture | Succeeded | Refunded => assert_eq!(ok.unwrap().get(), 700),
                other => assert_eq!(ok, Err(Refusal::NotCapturable(other))),
            }
        }
        assert_eq!(capture(Succeeded, open, Some(Amount::new(700).unwrap())).unwrap().get(), 700);
        assert_eq!(
            capture(RequiresCapture, open, Some(Amount::new(701).unwrap())),
            Err(Refusal::CaptureTooLarge { requested: 701, available: 700 })
        );
        assert_eq!(capture(Succeeded, balances(1000, 0, 0), None), Err(Refusal::NotCapturable(Succeeded)));
    }

    #[test]
    fn the_first_capture_succeeds_the_payment() {
        assert_eq!(capture_succeeded(RequiresCapture).unwrap().unwrap().to, Succeeded);
        assert_eq!(capture_succeeded(Succeeded), Ok(None));
        assert_eq!(capture_succeeded(Refunded), Ok(None));
        assert_eq!(capture_succeeded(Canceled), Err(Refusal::Stale(Canceled)));
        assert_eq!(authorize_succeeded(Pending).unwrap().to, RequiresCapture);
        assert_eq!(authorize_succeeded(Canceled), Err(Refusal::Stale(Canceled)));
    }

    #[test]
    fn chargebacks_are_bounded_like_refunds() {
        let b = balances(1000, 300, 200);
        assert_eq!(chargeback(Succeeded, b, Amount::new(500).unwrap()), Ok(Refunded));
        assert_eq!(
            chargeback(Succeeded, b, Amount::new(501).unwrap()),
            Err(Refusal::RefundTooLarge { requested: 501, available: 500 })
        );
        assert_eq!(chargeback(Pending, b, Amount::new(1).unwrap()), Err(Refusal::NotRefundable(Pending)));
        assert_eq!(status_after_refunds(0), Succeeded);
        assert_eq!(status_after_refunds(1), Refunded);
    }

    #[test]
    fn authentication_is_asked_of_pending_charges_once() {
        assert_eq!(action_required(Pending).unwrap().unwrap().to, RequiresAction);
        assert_eq!(action_required(RequiresAction), Ok(None));
        assert_eq!(action_required(Canceled), Err(Refusal::Stale(Canceled)));
        assert_eq!(authorize_succeeded(RequiresAction).unwrap().to, RequiresCapture);
    }

    #[test]
    fn refund_success_moves_to_refunded() {
        assert_eq!(refund_succeeded(Succeeded).unwrap().to, Refunded);
        assert_eq!(refund_succeeded(Refunded).unwrap().to, Refunded);
        assert_eq!(refund_succeeded(Pending), Err(Refusal::Stale(Pending)));
    }
}
