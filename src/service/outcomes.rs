//! Recording a provider's answer: the attempt's successor on a transient
//! failure, or the transaction, the payment and the event. One use case for
//! both ways an answer arrives: the worker after its call, and a provider's
//! notification.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgConnection;

use crate::db::attempts;
use crate::db::charges::{self, ChargeResult, Settled};
use crate::db::payment_changes as changes;
use crate::db::payments::{self as store, Payment, PaymentRow};
use crate::db::transactions::{self as txns, TransactionRow};
use crate::db::{events, meta_events};
use crate::domain::{self, AttemptStatus, FailureCode, PaymentStatus, Scope, TransactionStatus, Transition};
use crate::provider::{Operation, ProviderOutcome};
use crate::retry::Schedule;

/// Jitter of payment retries (contract §4: ±10 %).
pub const JITTER: f64 = 0.1;

/// The attempt's status and error code for `outcome` (a pending answer
/// leaves the attempt running, so it has none).
pub fn attempt_result(outcome: &ProviderOutcome) -> (AttemptStatus, Option<FailureCode>) {
    match outcome {
        ProviderOutcome::Failed { code, .. } | ProviderOutcome::Unknown { code, .. } => {
            (AttemptStatus::Failed, Some(*code))
        }
        _ => (AttemptStatus::Succeeded, None),
    }
}

/// The retry and inquiry schedules of payments (`payments.retry_schedule`,
/// `payments.inquiry_schedule`).
pub struct Schedules {
    /// Delays between calls after a transient failure or an unknown outcome.
    pub retry: Schedule,
    /// Delays between inquiries once the retries are used up after an
    /// unknown outcome.
    pub inquiry: Vec<Duration>,
}

impl Schedules {
    /// From the payments settings.
    pub fn new(settings: &crate::config::PaymentSettings) -> Self {
        Self { retry: Schedule::new(&settings.retry_schedule, JITTER), inquiry: settings.inquiry_schedule.clone() }
    }
}

/// Records `outcome` of attempt `attempt` (already finished by the caller,
/// in the same transaction, with `payment` locked).
pub async fn record(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    attempt: &attempts::Claimed,
    operation: Operation,
    outcome: &ProviderOutcome,
    schedules: &Schedules,
) -> anyhow::Result<()> {
    let retry = retry_delay(outcome, attempt, &schedules.retry);
    let unknown = match outcome {
        ProviderOutcome::Unknown { .. } => {
            // Whatever follows, the money may have moved: never failed for it.
            txns::mark_unknown(conn, &txn.id).await?;
            crate::observe::unknown_outcome("recorded");
            true
        }
        // The last call was refused before any work, but an earlier one's
        // outcome is unknown: that one may have charged. (An inquiry's
        // "never received" is the provider's word that nothing was done.)
        ProviderOutcome::Failed { code, .. } if code.is_transient() && retry.is_none() && !attempt.inquiry => {
            txns::is_unknown(conn, &txn.id).await?
        }
        _ => false,
    };
    match (retry, operation) {
        (Some(delay), _) => schedule_retry(conn, payment, attempt, operation, outcome, delay).await,
        (None, _) if unknown => schedule_inquiry(conn, payment, attempt, &schedules.inquiry).await,
        (None, Operation::Purchase | Operation::Authorize) => {
            apply_charge(conn, payment, txn, operation, outcome).await?;
            if let Some(code) = failure_code(outcome) {
                // The payment as payment.failed showed it.
                let row = store::lock_by_id(conn, &payment.id).await?.context("payment vanished")?;
                let attempt = attempt_json(attempt, Some(code), None);
                meta_events::attempt_failed(conn, &scope_of(payment), &Payment::new(row, Vec::new()), attempt).await?;
            }
            Ok(())
        }
        (None, Operation::Capture) => apply_capture(conn, payment, txn, outcome).await,
        (None, Operation::Void) => apply_void(conn, payment, txn, outcome).await,
        (None, Operation::Refund) => apply_refund(conn, payment, txn, outcome).await,
    }
}

/// When a transient failure of `attempt` is tried again: `None` for a final
/// outcome, or when the schedule is used up.
pub fn retry_delay(outcome: &ProviderOutcome, attempt: &attempts::Claimed, retry: &Schedule) -> Option<Duration> {
    match outcome {
        ProviderOutcome::Failed { code, .. } if code.is_transient() => {
            retry.delay_after(usize::try_from(attempt.number).unwrap_or(usize::MAX))
        }
        ProviderOutcome::Unknown { .. } => retry.delay_after(usize::try_from(attempt.number).unwrap_or(usize::MAX)),
        _ => None,
    }
}

/// A transient failure with retries left: the next attempt is a row due
/// after `delay`; the scheduler enqueues it then. Nothing else changes: the
/// payment stays pending and says when it will be tried again.
async fn schedule_retry(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    claimed: &attempts::Claimed,
    operation: Operation,
    outcome: &ProviderOutcome,
    delay: Duration,
) -> anyhow::Result<()> {
    let next = claimed.number.checked_add(1).context("attempt number overflow")?;
    let due = attempts::insert_later(conn, &claimed.payment_id, &claimed.transaction_id, next, delay).await?;
    tracing::info!(payment_id = %payment.id, attempt = next, ?delay, "transient failure; retry scheduled");
    if matches!(operation, Operation::Purchase | Operation::Authorize)
        && let Some(row) = changes::count_retry(conn, &payment.id, due).await?
        && failure_code(outcome).is_some()
    {
        // The payment's refunds: none while it is pending.
        let view = Payment::new(row, Vec::new());
        let attempt = attempt_json(claimed, failure_code(outcome), Some(due));
        meta_events::attempt_failed(conn, &scope_of(payment), &view, attempt).await?;
    }
    Ok(())
}

/// The error code of a failed outcome. An unknown one has none: the call
/// may have succeeded, so it is never announced as a failed attempt.
pub fn failure_code(outcome: &ProviderOutcome) -> Option<FailureCode> {
    match outcome {
        ProviderOutcome::Failed { code, .. } => Some(*code),
        _ => None,
    }
}

/// `data.attempt` of `payment.attempt_failed` (contract §13): retried at
/// `next` if it is given.
pub fn attempt_json(
    claimed: &attempts::Claimed,
    code: Option<FailureCode>,
    next: Option<time::OffsetDateTime>,
) -> serde_json::Value {
    serde_json::json!({
        "id": claimed.id, "number": claimed.number, "error_code": code,
        "will_retry": next.is_some(), "next_attempt_at": next.map(crate::timefmt::format),
    })
}

/// The retries are used up and the last call's outcome is unknown: the
/// provider is asked after the next step of the inquiry schedule. When the
/// schedule is used up too, the transaction stays `unknown` and the payment
/// `pending`, for an operator: nothing runs again by itself.
async fn schedule_inquiry(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    claimed: &attempts::Claimed,
    inquiry: &[Duration],
) -> anyhow::Result<()> {
    let asked = attempts::inquiries(conn, &claimed.transaction_id).await?;
    let Some(delay) = usize::try_from(asked).ok().and_then(|n| inquiry.get(n)) else {
        tracing::warn!(
            payment_id = %payment.id, transaction_id = %claimed.transaction_id, inquiries = asked,
            "the outcome is still unknown after the inquiry schedule; it waits for an operator"
        );
        crate::observe::unknown_outcome("left_for_operator");
        return Ok(());
    };
    let next = claimed.number.checked_add(1).context("attempt number overflow")?;
    attempts::insert_inquiry(conn, &claimed.payment_id, &claimed.transaction_id, next, *delay).await?;
    tracing::info!(payment_id = %payment.id, attempt = next, ?delay, "outcome unknown; the provider will be asked");
    Ok(())
}

fn scope_of(p: &PaymentRow) -> Scope {
    Scope::system(p.merchant_id.clone(), p.livemode)
}

/// What a charge's final outcome (a success, or a failure with no retry
/// left) does to `payment`: its transition and what the transaction and
/// payment store. `None` for a pending answer, or when the payment moved on
/// (it cannot, while an attempt runs, but the attempt's own outcome is
/// still recorded).
pub fn charge_change<'a>(
    payment: &PaymentRow,
    operation: Operation,
    amount: i64,
    outcome: &'a ProviderOutcome,
) -> Option<(Transition, ChargeResult<'a>)> {
    let authorize = operation == Operation::Authorize;
    let (transition, result) = match outcome {
        ProviderOutcome::Succeeded { reference } => {
            let (captured, capturable) = if authorize { (0, amount) } else { (amount, 0) };
            let t = if authorize {
                domain::payment::authorize_succeeded(payment.status)
            } else {
                domain::payment::charge_succeeded(payment.status)
            };
            (t, ChargeResult::Succeeded { reference, captured, capturable })
        }
        ProviderOutcome::Failed { code, message } => {
            (domain::payment::charge_failed(payment.status), ChargeResult::Failed { code: *code, message })
        }
        ProviderOutcome::Pending { .. } | ProviderOutcome::RequiresAction { .. } | ProviderOutcome::Unknown { .. } => {
            return None;
        }
    };
    Some((expected(payment, "charge", transition)?, result))
}

/// The state machine's answer to an outcome, or `None` when the payment
/// cannot take it (it moved on meanwhile): logged, and the outcome's own
/// record (attempt, transaction) is kept without touching the payment.
pub(super) fn expected<T>(payment: &PaymentRow, what: &str, answer: Result<T, domain::Refusal>) -> Option<T> {
    answer
        .map_err(|refusal| {
            tracing::error!(payment_id = %payment.id, %refusal, "{what} outcome for a payment that cannot take it");
        })
        .ok()
}

/// Applies a charge (purchase or authorization) outcome to the transaction
/// and the payment: a purchase captures at once, an authorization leaves the
/// whole amount capturable.
pub(super) async fn apply_charge(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    operation: Operation,
    outcome: &ProviderOutcome,
) -> anyhow::Result<()> {
    // Here a failure is final: a hard decline, or the schedule is used up.
    let Some((transition, result)) = charge_change(payment, operation, txn.amount, outcome) else { return Ok(()) };
    let settled =
        Settled { payment_id: &payment.id, transaction_id: &txn.id, from: transition.from, to: transition.to, result };
    let row = charges::settle_all(conn, &[settled]).await?.pop().context("payment changed while locked")?;
    // The payment was pending until now: it has no refunds to read.
    emit_with(conn, Payment::new(row, Vec::new()), transition).await
}

/// Applies a capture outcome. A success adds to `amount_captured` (the first
/// one makes the payment `succeeded`); a failure gives the amount back to
/// `amount_capturable`, where the capture had reserved it.
pub(super) async fn apply_capture(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    outcome: &ProviderOutcome,
) -> anyhow::Result<()> {
    match outcome {
        ProviderOutcome::Succeeded { reference } => {
            let Some(transition) = expected(payment, "capture", domain::payment::capture_succeeded(payment.status))
            else {
                return Ok(());
            };
            txns::settle(conn, &txn.id, TransactionStatus::Succeeded, Some(reference), None).await?;
            let captured = payment.amount_captured.checked_add(txn.amount).context("captured amount overflow")?;
            let status = transition.map_or(payment.status, |t| t.to);
            if crate::provider::captures_once(&payment.provider) {
                // The provider released the rest of the authorization.
                changes::release_rest(conn, &payment.id).await?;
            }
            let row = changes::record_capture(conn, &payment.id, payment.status, status, captured)
                .await?
                .context("payment changed while locked")?;
            match transition {
                Some(t) => emit(conn, row, t).await,
                None => Ok(()),
            }
        }
        ProviderOutcome::Failed { code, message } => {
            txns::settle(conn, &txn.id, TransactionStatus::Failed, None, Some((*code, message))).await?;
            changes::release_capture(conn, &payment.id, txn.amount).await?;
            Ok(())
        }
        ProviderOutcome::Pending { .. } | ProviderOutcome::RequiresAction { .. } | ProviderOutcome::Unknown { .. } => {
            Ok(())
        }
    }
}

/// Applies a void outcome. The payment was canceled (and its capturable
/// amount zeroed) when the void was asked for; a void the provider refuses
/// is recorded, and the authorization lapses at the provider by itself.
pub(super) async fn apply_void(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    outcome: &ProviderOutcome,
) -> anyhow::Result<()> {
    match outcome {
        ProviderOutcome::Succeeded { reference } => {
            txns::settle(conn, &txn.id, TransactionStatus::Succeeded, Some(reference), None).await?;
            // A charge that waited for the customer (3-D Secure) can no
            // longer succeed: it is canceled with the attempt holding it.
            if let Some(charge) = txns::charge_of(conn, &payment.id).await? {
                if let Some(running) = attempts::running_for(conn, &charge).await? {
                    attempts::finish(conn, &running, AttemptStatus::Canceled, Some(FailureCode::Canceled)).await?;
                }
                txns::settle(conn, &charge, TransactionStatus::Canceled, None, None).await?;
            }
        }
        ProviderOutcome::Failed { code, message } => {
            tracing::warn!(payment_id = %payment.id, code = code.as_str(), "the provider refused a void");
            txns::settle(conn, &txn.id, TransactionStatus::Failed, None, Some((*code, message))).await?;
        }
        ProviderOutcome::Pending { .. } | ProviderOutcome::RequiresAction { .. } | ProviderOutcome::Unknown { .. } => {}
    }
    Ok(())
}

/// Applies a refund outcome: the refund transaction, and on success the
/// payment's refunded amount and status.
pub(super) async fn apply_refund(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    outcome: &ProviderOutcome,
) -> anyhow::Result<()> {
    match outcome {
        ProviderOutcome::Succeeded { reference } => {
            let Some(transition) = expected(payment, "refund", domain::payment::refund_succeeded(payment.status))
            else {
                return Ok(());
            };
            txns::settle(conn, &txn.id, TransactionStatus::Succeeded, Some(reference), None).await?;
            let refunded = payment.amount_refunded.checked_add(txn.amount).context("refunded amount overflow")?;
            let row = changes::set_refunded(conn, &payment.id, transition.from, transition.to, refunded)
                .await?
                .context("payment changed while locked")?;
            emit(conn, row, transition).await
        }
        ProviderOutcome::Failed { code, message } => {
            // The refund failed; the payment is unchanged and the amount is
            // refundable again.
            txns::settle(conn, &txn.id, TransactionStatus::Failed, None, Some((*code, message))).await?;
            Ok(())
        }
        ProviderOutcome::Pending { .. } | ProviderOutcome::RequiresAction { .. } | ProviderOutcome::Unknown { .. } => {
            Ok(())
        }
    }
}

/// The provider waits for the customer to authenticate a pending charge:
/// the payment becomes `requires_action` with `next_action`, and
/// `payment.requires_action` is sent (once: a repeated ask only updates
/// `next_action`).
pub async fn require_action(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    reference: &str,
    next_action: &serde_json::Value,
) -> anyhow::Result<()> {
    let Some(transition) = expected(payment, "authentication", domain::payment::action_required(payment.status)) else {
        return Ok(());
    };
    let (from, to) = transition.map_or((payment.status, payment.status), |t| (t.from, t.to));
    let row = changes::require_action(conn, &payment.id, from, to, reference, next_action)
        .await?
        .context("payment changed while locked")?;
    match transition {
        Some(t) => emit(conn, row, t).await,
        None => Ok(()),
    }
}

pub(super) async fn emit(conn: &mut PgConnection, row: PaymentRow, transition: Transition) -> anyhow::Result<()> {
    let payment = store::view(conn, row).await?;
    emit_with(conn, payment, transition).await
}

async fn emit_with(conn: &mut PgConnection, payment: Payment, transition: Transition) -> anyhow::Result<()> {
    debug_assert!(transition.to != PaymentStatus::Pending);
    crate::observe::transition(transition.from.as_str(), transition.to.as_str());
    let scope = scope_of(&payment.row);
    events::record(conn, &scope, transition.event, &payment).await?;
    Ok(())
}
