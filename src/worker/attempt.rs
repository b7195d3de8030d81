//! Running one attempt: claim it, call the provider with the transaction's
//! idempotency key, and commit attempt, transaction, payment and event in one
//! transaction. Every step is safe to repeat after a crash at any line.

use std::time::Duration;

use anyhow::Context;
use sqlx::{PgConnection, PgPool};

use crate::db::payments::{self as store, PaymentRow, Scope, TransactionRow};
use crate::db::{attempts, events};
use crate::domain::{self, AttemptId, PaymentStatus, Transition};
use crate::faults::Faults;
use crate::provider::{Operation, ProviderOutcome, ProviderRequest, Providers};
use crate::retry::Schedule;

/// Runs attempts for the worker role.
pub struct AttemptRunner {
    pool: PgPool,
    providers: Providers,
    provider_timeout: Duration,
    retry: Schedule,
    faults: Faults,
}

/// Jitter of payment retries (contract §4: ±10 %).
pub const JITTER: f64 = 0.1;

impl AttemptRunner {
    /// A runner whose provider calls time out after `provider_timeout` and
    /// whose transient failures are retried on `retry_schedule`.
    pub fn new(pool: PgPool, providers: Providers, provider_timeout: Duration, retry_schedule: &[Duration], faults: Faults) -> Self {
        Self { pool, providers, provider_timeout, retry: Schedule::new(retry_schedule, JITTER), faults }
    }

    /// Runs the attempt if it can still be claimed. `Ok` means the message
    /// has nothing left to do (ack it); `Err` means nothing was committed.
    pub async fn run(&self, id: &AttemptId) -> anyhow::Result<()> {
        // The lease outlives the provider call; if this process dies, the
        // scheduler hands the attempt back after it, and the provider answers
        // the repeated call from its idempotency record.
        let lease = self.provider_timeout * 2;
        let mut conn = self.pool.acquire().await?;
        let Some(claimed) = attempts::claim(&mut conn, id, lease).await? else {
            tracing::debug!(attempt_id = %id, "attempt not claimable; nothing to do");
            return Ok(());
        };
        let txn = store::transaction(&mut conn, &claimed.transaction_id).await?.context("attempt without transaction")?;
        let payment = store::find_any(&mut conn, &claimed.payment_id).await?.context("attempt without payment")?;
        drop(conn);
        let operation = Operation::from_transaction_type(&txn.kind).context("transaction type without provider call")?;
        let request = ProviderRequest {
            idempotency_key: txn.id.to_string(),
            operation,
            payment_method_id: payment.payment_method_id.clone(),
            amount: txn.amount,
            currency: txn.currency.clone(),
        };
        let outcome = match tokio::time::timeout(self.provider_timeout, self.providers.call(&payment.provider, &request)).await {
            Ok(outcome) => outcome,
            Err(_) => ProviderOutcome::Failed {
                code: domain::FailureCode::Timeout,
                message: "the provider did not answer in time".into(),
            },
        };
        tracing::info!(payment_id = %payment.id, attempt_id = %id, operation = operation.as_str(), ?outcome, "provider answered");
        self.faults.crash_point("worker.after_provider_call");

        let mut tx = self.pool.begin().await?;
        // Lock order everywhere: payment, then attempt (no deadlock with cancels).
        let payment = store::lock_by_id(&mut tx, &payment.id).await?.context("payment vanished")?;
        let (status, code) = match &outcome {
            ProviderOutcome::Succeeded { .. } => ("succeeded", None),
            ProviderOutcome::Failed { code, .. } => ("failed", Some(code.as_str())),
        };
        if !attempts::finish(&mut tx, &claimed, status, code).await? {
            tracing::info!(attempt_id = %id, "claim lost to another worker; discarding this outcome");
            return Ok(());
        }
        let retry_in = match &outcome {
            ProviderOutcome::Failed { code, .. } if code.is_transient() => {
                self.retry.delay_after(usize::try_from(claimed.number).unwrap_or(usize::MAX))
            }
            _ => None,
        };
        match (retry_in, operation) {
            (Some(delay), _) => schedule_retry(&mut tx, &payment, &claimed, operation, delay).await?,
            (None, Operation::Purchase) => apply_charge(&mut tx, &payment, &txn, &outcome).await?,
            (None, Operation::Refund) => apply_refund(&mut tx, &payment, &txn, &outcome).await?,
        }
        self.faults.crash_point("worker.before_commit");
        tx.commit().await?;
        Ok(())
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
    }
}

async fn emit(conn: &mut PgConnection, row: PaymentRow, transition: Transition) -> anyhow::Result<()> {
    debug_assert!(transition.to != PaymentStatus::Pending);
    let scope = scope_of(&row);
    let payment = store::view(conn, row).await?;
    events::record(conn, &scope, transition.event, &payment).await?;
    Ok(())
}
