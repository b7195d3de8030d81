//! Recording a provider's final answer: the attempt's successor on a
//! transient failure, or the transaction, the payment and the event. Used by
//! the worker after a call and by provider notifications.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgConnection;

use crate::db::attempts;
use crate::db::events;
use crate::db::payments::{self as store, PaymentRow, Scope, TransactionRow};
use crate::domain::{self, PaymentStatus, Transition};
use crate::provider::{Operation, ProviderOutcome};
use crate::retry::Schedule;

/// Records `outcome` of attempt `attempt` (already finished by the caller,
/// in the same transaction, with `payment` locked).
pub async fn record(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    attempt: &attempts::Claimed,
    operation: Operation,
    outcome: &ProviderOutcome,
    retry: &Schedule,
) -> anyhow::Result<()> {
    let retry_in = match outcome {
        ProviderOutcome::Failed { code, .. } if code.is_transient() => {
            retry.delay_after(usize::try_from(attempt.number).unwrap_or(usize::MAX))
        }
        _ => None,
    };
    match (retry_in, operation) {
        (Some(delay), _) => schedule_retry(conn, payment, attempt, operation, delay).await,
        (None, Operation::Purchase) => apply_charge(conn, payment, txn, outcome).await,
        (None, Operation::Refund) => apply_refund(conn, payment, txn, outcome).await,
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
    delay: Duration,
) -> anyhow::Result<()> {
    let next = claimed.number.checked_add(1).context("attempt number overflow")?;
    let due = attempts::insert_later(conn, &claimed.payment_id, &claimed.transaction_id, next, delay).await?;
    tracing::info!(payment_id = %payment.id, attempt = next, ?delay, "transient failure; retry scheduled");
    if operation == Operation::Purchase {
        sqlx::query(
            "UPDATE payments SET attempt_count = attempt_count + 1, next_attempt_at = $2, updated_at = now()
             WHERE id = $1",
        )
        .bind(&payment.id)
        .bind(due)
        .execute(conn)
        .await?;
    }
    Ok(())
}

fn scope_of(p: &PaymentRow) -> Scope {
    Scope { merchant_id: p.merchant_id.clone(), livemode: p.livemode }
}

/// Applies a charge outcome to the transaction and the payment.
async fn apply_charge(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    outcome: &ProviderOutcome,
) -> anyhow::Result<()> {
    // Here a failure is final: a hard decline, or the schedule is used up.
    let transition = match outcome {
        ProviderOutcome::Succeeded { .. } => domain::payment::charge_succeeded(payment.status()),
        ProviderOutcome::Failed { .. } => domain::payment::charge_failed(payment.status()),
        ProviderOutcome::Pending { .. } => return Ok(()),
    };
    let transition = match transition {
        Ok(t) => t,
        Err(refusal) => {
            // The payment moved on (it cannot, while an attempt runs, but the
            // attempt's own outcome is still recorded).
            tracing::error!(payment_id = %payment.id, %refusal, "charge outcome for a payment that no longer expects it");
            return Ok(());
        }
    };
    let row: PaymentRow = match outcome {
        ProviderOutcome::Succeeded { reference } => {
            store::settle_transaction(conn, &txn.id, "succeeded", Some(reference), None).await?;
            sqlx::query_as(
                "UPDATE payments SET status = $2, amount_captured = $3, amount_capturable = 0, provider_reference = $4,
                     processed_at = now(), attempt_count = attempt_count + 1, next_attempt_at = NULL, updated_at = now()
                 WHERE id = $1 AND status = $5 RETURNING *",
            )
            .bind(&payment.id)
            .bind(transition.to.as_str())
            .bind(txn.amount)
            .bind(reference)
            .bind(transition.from.as_str())
            .fetch_one(&mut *conn)
            .await?
        }
        ProviderOutcome::Failed { code, message } => {
            store::settle_transaction(conn, &txn.id, "failed", None, Some((code.as_str(), message))).await?;
            sqlx::query_as(
                "UPDATE payments SET status = $2, error_code = $3, failure_message = $4, processed_at = now(),
                     attempt_count = attempt_count + 1, next_attempt_at = NULL, updated_at = now()
                 WHERE id = $1 AND status = $5 RETURNING *",
            )
            .bind(&payment.id)
            .bind(transition.to.as_str())
            .bind(code.as_str())
            .bind(message)
            .bind(transition.from.as_str())
            .fetch_one(&mut *conn)
            .await?
        }
        ProviderOutcome::Pending { .. } => return Ok(()),
    };
    emit(conn, row, transition).await
}

/// Applies a refund outcome: the refund transaction, and on success the
/// payment's refunded amount and status.
async fn apply_refund(
    conn: &mut PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    outcome: &ProviderOutcome,
) -> anyhow::Result<()> {
    match outcome {
        ProviderOutcome::Succeeded { reference } => {
            let transition = match domain::payment::refund_succeeded(payment.status()) {
                Ok(t) => t,
                Err(refusal) => {
                    tracing::error!(payment_id = %payment.id, %refusal, "refund outcome for a payment that cannot take it");
                    return Ok(());
                }
            };
            store::settle_transaction(conn, &txn.id, "succeeded", Some(reference), None).await?;
            let refunded = payment.amount_refunded.checked_add(txn.amount).context("refunded amount overflow")?;
            let row: PaymentRow = sqlx::query_as(
                "UPDATE payments SET status = $2, amount_refunded = $3, updated_at = now()
                 WHERE id = $1 AND status = $4 RETURNING *",
            )
            .bind(&payment.id)
            .bind(transition.to.as_str())
            .bind(refunded)
            .bind(transition.from.as_str())
            .fetch_one(&mut *conn)
            .await?;
            emit(conn, row, transition).await
        }
        ProviderOutcome::Failed { code, message } => {
            // The refund failed; the payment is unchanged and the amount is
            // refundable again.
            store::settle_transaction(conn, &txn.id, "failed", None, Some((code.as_str(), message))).await?;
            Ok(())
        }
        ProviderOutcome::Pending { .. } => Ok(()),
    }
}

async fn emit(conn: &mut PgConnection, row: PaymentRow, transition: Transition) -> anyhow::Result<()> {
    debug_assert!(transition.to != PaymentStatus::Pending);
    let scope = scope_of(&row);
    let payment = store::view(conn, row).await?;
    events::record(conn, &scope, transition.event, &payment).await?;
    Ok(())
}
