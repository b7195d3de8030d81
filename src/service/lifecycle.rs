//! Money operations on an existing payment: cancel (and void), capture,
//! refund, chargebacks and their reversals. Each one locks the payment,
//! asks the state machine, and commits the transaction row, the payment's
//! amounts, the event and the provider call's work message together.

use anyhow::anyhow;
use serde_json::Value;
use sqlx::PgConnection;

use super::params::Fields;
use super::payments::{REASON_MAX, parse_id};
use super::{ApiError, Ctx, IdempotencyKey, Outcome, begin_or_replay, finish, to_json};
use crate::db::payments::{self as store, PaymentRow};
use crate::db::{attempts, events, payment_changes as changes, refunds, transactions as txns};
use crate::domain::{
    self, Balances, PaymentId, PaymentStatus, Refusal, Scope, TransactionId, TransactionKind, TransactionStatus,
};

async fn locked(conn: &mut PgConnection, scope: &Scope, id: &PaymentId) -> Result<PaymentRow, ApiError> {
    store::find(conn, scope, id, true).await?.ok_or_else(|| ApiError::not_found("payment"))
}

/// The payment's money, counting refunds still in flight.
async fn balances(conn: &mut PgConnection, row: &PaymentRow) -> Result<Balances, ApiError> {
    let pending = txns::pending_sum(conn, &row.id, TransactionKind::Refund).await?;
    Ok(row.balances(pending))
}

/// A guarded change that found its payment in another state, although the
/// payment is locked: a bug, not the client's fault.
fn moved(id: &PaymentId) -> ApiError {
    ApiError::internal(anyhow!("payment {id} changed while locked"))
}

/// `POST /v1/payments/{id}/cancel`. From `pending`, cancels the scheduled
/// attempt so no provider call happens afterwards; from `requires_capture`,
/// releases the authorization with a void at the provider; from
/// `requires_action`, cancels the charge waiting for the customer with a
/// void at the provider.
pub async fn cancel(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["reason"])?;
    let reason = f.optional_string("reason", REASON_MAX)?;
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.cancel");
    let row = locked(&mut tx, scope, &id).await?;
    let transition = domain::payment::cancel(row.status)?;
    match transition.from {
        from @ (PaymentStatus::RequiresCapture | PaymentStatus::RequiresAction) => {
            // A capture in flight may succeed at the provider: let it finish.
            if txns::pending_exists(&mut tx, &id, TransactionKind::Capture).await? {
                return Err(Refusal::Processing.into());
            }
            // Waiting for the customer's authentication, the charge is
            // canceled at the provider (a success that beats the void is
            // still recorded: it is never dropped).
            let open = if from == PaymentStatus::RequiresAction { row.amount.get() } else { row.amount_capturable };
            if let Ok(open) = domain::Amount::new(open) {
                txns::insert_scheduled(&mut tx, &id, TransactionKind::Void, open, row.currency, None).await?;
            }
        }
        _ => {
            if let Some(txn) = txns::charge_of(&mut tx, &id).await? {
                // A charge that may have succeeded is not canceled (contract §12).
                if txns::is_unknown(&mut tx, &txn).await? {
                    return Err(ApiError::outcome_unknown());
                }
                attempts::cancel_scheduled(&mut tx, &txn).await?;
                // Checked after the cancel above took the row locks: a worker that
                // claimed first is visible here, one that claims later finds nothing.
                if attempts::running_exists(&mut tx, &txn).await? {
                    return Err(Refusal::Processing.into());
                }
                txns::settle(&mut tx, &txn, TransactionStatus::Canceled, None, None).await?;
            }
        }
    }
    let row = changes::cancel(&mut tx, &id, transition, reason.as_deref()).await?.ok_or_else(|| moved(&id))?;
    let payment = store::view(&mut tx, row).await?;
    events::record(&mut tx, scope, transition.event, &payment).await?;
    crate::observe::transition(transition.from.as_str(), transition.to.as_str());
    let outcome = finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&payment)? }).await?;
    crate::db::notify::ring_with(&ctx.db, crate::db::notify::PAYMENT_STATUS, id.as_str());
    Ok(outcome)
}

/// `POST /v1/payments/{id}/capture`: takes `amount` (default: all that is
/// capturable) of an authorized payment. The capture is recorded pending and
/// reserved from `amount_capturable` at once, so concurrent captures can never
/// exceed the authorization; the provider call follows on the worker, and the
/// first capture that succeeds makes the payment `succeeded`.
pub async fn capture(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["amount"])?;
    let requested = f.optional_amount("amount")?;
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.capture");
    let row = locked(&mut tx, scope, &id).await?;
    let amount = domain::payment::capture(row.status, balances(&mut tx, &row).await?, requested)?;
    txns::insert_scheduled(&mut tx, &id, TransactionKind::Capture, amount, row.currency, None).await?;
    let row = changes::reserve_capture(&mut tx, &id, amount).await?.ok_or_else(|| moved(&id))?;
    let payment = store::view(&mut tx, row).await?;
    finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&payment)? }).await
}

/// `POST /v1/payments/{id}/refund`: records a pending refund and queues the
/// provider call; `payment.refunded` follows when the provider confirms.
pub async fn refund(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["amount", "reason"])?;
    let requested = f.optional_amount("amount")?;
    let reason = f.optional_string("reason", REASON_MAX)?;
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.refund");
    let row = locked(&mut tx, scope, &id).await?;
    let amount = domain::payment::refund(row.status, balances(&mut tx, &row).await?, requested)?;
    let txn =
        txns::insert_scheduled(&mut tx, &id, TransactionKind::Refund, amount, row.currency, reason.as_deref()).await?;
    let refund = refunds::insert(&mut tx, &id, &txn, reason.as_deref()).await?;
    finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&refund)? }).await
}

/// `POST /v1/payments/{id}/chargebacks`: records money the cardholder's bank
/// took back. No provider call: the provider told the merchant. It counts
/// toward `amount_refunded` and leaves the payment `refunded`.
pub async fn chargeback(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["amount", "reason"])?;
    let amount = f.amount("amount")?;
    let reason = f.optional_string("reason", REASON_MAX)?;
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.chargeback");
    let row = locked(&mut tx, scope, &id).await?;
    let status = domain::payment::chargeback(row.status, balances(&mut tx, &row).await?, amount)?;
    let txn =
        txns::record(&mut tx, &id, TransactionKind::Chargeback, amount.get(), row.currency, reason.as_deref(), None)
            .await?;
    let refunded =
        row.amount_refunded.checked_add(amount.get()).ok_or_else(|| ApiError::internal(anyhow!("overflow")))?;
    set_refunded(&mut tx, &row, status, refunded).await?;
    finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&txn)? }).await
}

/// `POST /v1/payments/{id}/chargeback_reversals`: the merchant won the
/// dispute; the chargeback's amount is no longer refunded.
pub async fn reverse_chargeback(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["transaction_id"])?;
    let raw = f.string("transaction_id", 64)?;
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.chargeback_reversal");
    let row = locked(&mut tx, scope, &id).await?;
    let missing = || ApiError::not_found_param(format!("no such chargeback: {raw}"), "transaction_id");
    let source = TransactionId::parse(&raw).ok_or_else(missing)?;
    let chargeback = txns::find(&mut tx, &id, &source).await?.ok_or_else(missing)?;
    if chargeback.kind != TransactionKind::Chargeback {
        return Err(ApiError::invalid("transaction_id", format!("{raw} is a {}, not a chargeback", chargeback.kind)));
    }
    if txns::is_reversed(&mut tx, &source).await? {
        return Err(Refusal::AlreadyReversed.into());
    }
    let refunded = row
        .amount_refunded
        .checked_sub(chargeback.amount)
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::internal(anyhow!("payment {id} refunds less than its chargeback")))?;
    let kind = TransactionKind::ChargebackReversal;
    let txn = txns::record(&mut tx, &id, kind, chargeback.amount, row.currency, None, Some(&source)).await?;
    set_refunded(&mut tx, &row, domain::payment::status_after_refunds(refunded), refunded).await?;
    finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&txn)? }).await
}

/// Sets the refunded amount and the status it implies, guarded by the status
/// the caller read under the row lock.
async fn set_refunded(
    conn: &mut PgConnection,
    row: &PaymentRow,
    status: PaymentStatus,
    refunded: i64,
) -> Result<(), ApiError> {
    changes::set_refunded(conn, &row.id, row.status, status, refunded).await?.ok_or_else(|| moved(&row.id))?;
    if row.status != status {
        crate::observe::transition(row.status.as_str(), status.as_str());
    }
    Ok(())
}
