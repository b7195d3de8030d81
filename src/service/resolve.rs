//! Stuck transactions (contract §14): transactions whose outcome stayed
//! unknown after the inquiry schedule wait for an operator, who asks the
//! provider out of band and settles them. Operator keys only (merchants
//! 403). A resolve is recorded exactly as the provider's answer would have
//! been (the same outcome code: amounts, events, webhooks), with the
//! operator as the audit log's actor and the reason beside it.

use std::collections::HashMap;

use serde_json::Value;

use super::holds::operator_only;
use super::outcomes;
use super::params::{Fields, Query};
use super::payments::REASON_MAX;
use super::{ApiError, Ctx, ErrorCode, list_body, to_json};
use crate::db::{attempts, audit, notify, operators, payments as store, transactions as txns};
use crate::domain::{AttemptStatus, FailureCode, TransactionId, TransactionStatus, Viewer};
use crate::provider::{Operation, ProviderOutcome};

/// `GET /v1/transactions?status=unknown` (`limit`, `offset`): the stuck
/// transactions of every merchant, the longest stuck first. Only
/// `status=unknown` is listed (the default): it is an operator's work
/// list, not a search over every transaction.
pub async fn list(ctx: &Ctx, viewer: &Viewer, query: HashMap<String, String>) -> Result<Value, ApiError> {
    operator_only(viewer, "stuck transactions")?;
    let mut q = Query::new(query, &["status", "limit", "offset"])?;
    let status = q.parsed("status", TransactionStatus::parse, TransactionStatus::names)?;
    if status.is_some_and(|s| s != TransactionStatus::Unknown) {
        return Err(ApiError::invalid("status", "only status=unknown is listed here"));
    }
    let (limit, offset) = (q.limit()?, q.offset()?);
    let (rows, total) = operators::unknown_transactions(&ctx.db, limit, offset).await?;
    // A short work list: offset paging only.
    let has_more = offset + i64::try_from(rows.len()).unwrap_or(i64::MAX) < total;
    list_body(&rows, has_more, total)
}

/// `POST /v1/transactions/{id}/resolve` (`status`* `succeeded`|`failed`,
/// `provider_reference`, `reason`*; and `payd transactions resolve`):
/// settles an `unknown` transaction and its payment (409 otherwise). What
/// was still to ask the provider is dropped: the operator's word settles it.
pub async fn resolve(ctx: &Ctx, viewer: &Viewer, actor: &str, id: &str, body: Value) -> Result<Value, ApiError> {
    operator_only(viewer, "stuck transactions")?;
    let id = TransactionId::parse(id).ok_or_else(|| ApiError::not_found("transaction"))?;
    let mut f = Fields::new(body, &["status", "provider_reference", "reason"])?;
    let status = match f.string("status", 16)?.as_str() {
        "succeeded" => TransactionStatus::Succeeded,
        "failed" => TransactionStatus::Failed,
        _ => return Err(ApiError::invalid("status", "status must be succeeded or failed")),
    };
    let given_reference = f.optional_string("provider_reference", 255)?;
    let reason = f.string("reason", REASON_MAX)?;
    let mut tx = ctx.db.begin().await?;
    audit::act_because(&mut tx, actor, "transaction.resolve", &reason).await?;
    let txn = txns::get(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    // Lock order everywhere: payment, then transaction and attempts.
    let payment =
        store::lock_by_id(&mut tx, &txn.payment_id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    let current = operators::lock_transaction(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    let operation =
        Operation::of(txn.kind).filter(|_| current.status == TransactionStatus::Unknown).ok_or_else(|| {
            ApiError::new(
                409,
                ErrorCode::TransactionNotUnknown,
                format!("only a transaction whose outcome is unknown can be resolved; this one is {}", current.status),
            )
        })?;
    let outcome = match status {
        TransactionStatus::Succeeded => ProviderOutcome::Succeeded {
            reference: given_reference.or(current.provider_reference.clone()).ok_or_else(|| {
                let message = "provider_reference is needed to settle a transaction as succeeded";
                ApiError::new(400, ErrorCode::ParameterMissing, message).with_param("provider_reference")
            })?,
        },
        _ => ProviderOutcome::Failed { code: FailureCode::ResolvedFailed, message: reason.clone() },
    };
    attempts::cancel_scheduled(&mut tx, &id).await?;
    if let Some(running) = attempts::running_for(&mut tx, &id).await? {
        // An inquiry in flight: its answer, if it comes, finds its claim gone.
        attempts::finish(&mut tx, &running, AttemptStatus::Canceled, Some(FailureCode::Canceled)).await?;
    }
    let applied = match operation {
        Operation::Purchase | Operation::Authorize => {
            outcomes::apply_charge(&mut tx, &payment, &txn, operation, &outcome).await
        }
        Operation::Capture => outcomes::apply_capture(&mut tx, &payment, &txn, &outcome).await,
        Operation::Void => outcomes::apply_void(&mut tx, &payment, &txn, &outcome).await,
        Operation::Refund => outcomes::apply_refund(&mut tx, &payment, &txn, &outcome).await,
    };
    applied.map_err(ApiError::internal)?;
    // The payment could not take the outcome (it moved on): the
    // transaction still records the operator's word.
    if operators::lock_transaction(&mut tx, &id).await?.is_some_and(|t| t.status == TransactionStatus::Unknown) {
        let (reference, failure) = match &outcome {
            ProviderOutcome::Succeeded { reference } => (Some(reference.as_str()), None),
            _ => (None, Some((FailureCode::ResolvedFailed, reason.as_str()))),
        };
        txns::settle(&mut tx, &id, status, reference, failure).await?;
    }
    let settled = operators::lock_transaction(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    tx.commit().await?;
    crate::observe::unknown_outcome("resolved");
    tracing::warn!(transaction_id = %id, payment_id = %payment.id, %actor, status = status.as_str(), %reason,
        "operator: unknown transaction resolved");
    notify::ring(&ctx.db, notify::DELIVERIES);
    notify::ring_with(&ctx.db, notify::PAYMENT_STATUS, payment.id.as_str());
    to_json(&settled)
}
