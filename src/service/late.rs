//! Successes a provider reports for money payd had settled otherwise
//! (contract §12): recorded, never dropped, with the audit log saying why.

use anyhow::Context;
use sqlx::PgConnection;

use super::outcomes;
use crate::db::attempts;
use crate::db::payment_changes as changes;
use crate::db::payments::PaymentRow;
use crate::db::transactions::{self as txns, TransactionRow};
use crate::domain::{self, PaymentStatus};

/// A success the provider reports for a charge no attempt is waiting for:
/// of a payment payd had settled as failed or canceled, or of one still
/// pending between calls or inquiries (its outcome unknown). Recorded, never
/// dropped (contract §12): what was scheduled for the transaction is
/// canceled, the transaction becomes `succeeded`, the payment `succeeded`
/// (or `requires_capture` for an authorization), its event is sent, and the
/// audit log says why. Answers false when the payment cannot take it.
pub async fn late_success(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    reference: &str,
) -> anyhow::Result<bool> {
    let authorize = txn.kind == domain::TransactionKind::Authorize;
    let transition = match (payment.status, authorize) {
        (PaymentStatus::Pending | PaymentStatus::RequiresAction, true) => {
            domain::payment::authorize_succeeded(payment.status)
        }
        (PaymentStatus::Pending | PaymentStatus::RequiresAction, false) => {
            domain::payment::charge_succeeded(payment.status)
        }
        (status, _) => domain::payment::late_success(status, authorize),
    };
    let Some(transition) = outcomes::expected(payment, "late charge", transition) else {
        return Ok(false);
    };
    if !txns::settle_late_success(conn, &txn.id, reference).await? {
        return Ok(false);
    }
    attempts::cancel_scheduled(conn, &txn.id).await?;
    let (captured, capturable) = if authorize { (0, txn.amount) } else { (txn.amount, 0) };
    crate::db::audit::act(conn, domain::SYSTEM_ACTOR, "provider.late_success").await?;
    let row = changes::late_success(conn, &payment.id, transition, reference, captured, capturable)
        .await?
        .context("payment changed while locked")?;
    tracing::warn!(
        payment_id = %payment.id, transaction_id = %txn.id, from = transition.from.as_str(),
        "the provider reports a success for a payment settled as {}; recorded", transition.from.as_str()
    );
    crate::observe::unknown_outcome("late_success");
    outcomes::emit(conn, row, transition).await?;
    Ok(true)
}

/// A refund success the provider reports after payd settled the refund as
/// failed (or while it was unknown): the customer got the money back, so
/// the refund is recorded, `amount_refunded` grows and `payment.refunded`
/// is sent. If that would refund more than was captured (the merchant
/// refunded again meanwhile), the refund is recorded and the payment left
/// for an operator, loudly. Answers false when there was nothing to record.
pub async fn late_refund_success(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    reference: &str,
) -> anyhow::Result<bool> {
    crate::db::audit::act(conn, domain::SYSTEM_ACTOR, "provider.late_success").await?;
    if !txns::settle_late_success(conn, &txn.id, reference).await? {
        return Ok(false);
    }
    attempts::cancel_scheduled(conn, &txn.id).await?;
    crate::observe::unknown_outcome("late_success");
    let refunded = payment.amount_refunded.checked_add(txn.amount).context("refunded amount overflow")?;
    if refunded > payment.amount_captured {
        tracing::error!(
            payment_id = %payment.id, transaction_id = %txn.id, refunded, captured = payment.amount_captured,
            "a late refund success makes more refunded than captured; an operator must reconcile"
        );
        return Ok(true);
    }
    let Some(transition) =
        outcomes::expected(payment, "late refund", domain::payment::refund_succeeded(payment.status))
    else {
        return Ok(true);
    };
    let row = changes::set_refunded(conn, &payment.id, transition.from, transition.to, refunded)
        .await?
        .context("payment changed while locked")?;
    tracing::warn!(payment_id = %payment.id, transaction_id = %txn.id, "the provider reports a refund payd had settled as failed; recorded");
    outcomes::emit(conn, row, transition).await?;
    Ok(true)
}
