//! Recording the final outcome of charges (purchases and authorizations):
//! the transaction and its payment in one statement, for one payment or a
//! batch of them (the worker's group commit).

use sqlx::PgConnection;

use super::payments::PaymentRow;
use crate::domain::{FailureCode, PaymentId, PaymentStatus, TransactionId, TransactionStatus};

/// One charge outcome to write. The payment must be locked by the caller
/// (in the same transaction), and `from` is the status it was read in.
#[derive(Clone, Debug)]
pub struct Settled<'a> {
    pub payment_id: &'a PaymentId,
    pub transaction_id: &'a TransactionId,
    pub from: PaymentStatus,
    pub to: PaymentStatus,
    pub result: ChargeResult<'a>,
}

/// What the provider answered, as stored.
#[derive(Clone, Debug)]
pub enum ChargeResult<'a> {
    /// Charged: the captured and capturable amounts the payment now has.
    Succeeded { reference: &'a str, captured: i64, capturable: i64 },
    /// Declined for good.
    Failed { code: FailureCode, message: &'a str },
}

/// Writes the outcomes: each transaction (still `pending`) becomes
/// succeeded or failed, each payment (still in its `from` status) takes its
/// new status, amounts, reference or error, and counts the attempt. Answers
/// the payments changed, in no particular order; one whose status moved on
/// is left out.
pub async fn settle_all(conn: &mut PgConnection, outcomes: &[Settled<'_>]) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let n = outcomes.len();
    let (mut payments, mut txns, mut from, mut to) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut txn_status, mut captured, mut capturable) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut references, mut codes, mut messages) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for o in outcomes {
        payments.push(o.payment_id.as_str());
        txns.push(o.transaction_id.as_str());
        from.push(o.from.as_str());
        to.push(o.to.as_str());
        match &o.result {
            ChargeResult::Succeeded { reference, captured: c, capturable: k } => {
                txn_status.push(TransactionStatus::Succeeded.as_str());
                captured.push(Some(*c));
                capturable.push(Some(*k));
                references.push(Some(*reference));
                codes.push(None);
                messages.push(None);
            }
            ChargeResult::Failed { code, message } => {
                txn_status.push(TransactionStatus::Failed.as_str());
                captured.push(None);
                capturable.push(None);
                references.push(None);
                codes.push(Some(code.as_str()));
                messages.push(Some(*message));
            }
        }
    }
    // `id = ANY(…)` beside the join lets the planner look the rows up by
    // key: it cannot see how few rows `unnest` gives, and would scan.
    // A success clears the transaction's error and leaves the payment's
    // error fields; a failure leaves the amounts and the references.
    sqlx::query_as(
        "WITH i AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[],
                                  $8::text[], $9::text[], $10::text[])
                 AS i(payment_id, transaction_id, from_status, to_status, txn_status, captured, capturable,
                      reference, code, message)),
         txn AS (
             UPDATE transactions t SET status = i.txn_status, provider_reference = COALESCE(i.reference, t.provider_reference),
                 error_code = i.code, failure_message = i.message, updated_at = now()
             FROM i WHERE t.id = ANY($2) AND t.id = i.transaction_id AND t.status IN ('pending', 'unknown'))
         UPDATE payments p SET status = i.to_status,
             amount_captured = COALESCE(i.captured, p.amount_captured),
             amount_capturable = COALESCE(i.capturable, p.amount_capturable),
             provider_reference = COALESCE(i.reference, p.provider_reference),
             error_code = COALESCE(i.code, p.error_code), failure_message = COALESCE(i.message, p.failure_message),
             processed_at = now(), attempt_count = p.attempt_count + 1, next_attempt_at = NULL, next_action = NULL,
             updated_at = now()
         FROM i WHERE p.id = ANY($1) AND p.id = i.payment_id AND p.status = i.from_status
         RETURNING p.*",
    )
    .bind(payments)
    .bind(txns)
    .bind(from)
    .bind(to)
    .bind(txn_status)
    .bind(captured)
    .bind(capturable)
    .bind(references)
    .bind(codes)
    .bind(messages)
    .fetch_all(conn)
    .await
}
