//! Attempts: listing them, and cancelling a scheduled one (operators, or the
//! owning merchant). A canceled attempt never runs; its payment fails with
//! `retry_canceled` and `payment.failed` is sent.

use std::collections::HashMap;

use anyhow::anyhow;
use serde_json::Value;

use super::params::{Fields, Query, unknown_cursor};
use super::payments::{REASON_MAX, merchant_filter, parse_id};
use super::{ApiError, Ctx, ErrorCode, list_body, to_json};
use crate::db::attempts::{self, AttemptFilter};
use crate::db::payments as store;
use crate::db::{events, payment_changes as changes, transactions as txns};
use crate::domain::{
    self, AttemptId, AttemptStatus, FailureCode, PaymentId, Scope, TransactionKind, TransactionStatus, Viewer,
};

fn parse_attempt_id(raw: &str) -> Result<AttemptId, ApiError> {
    AttemptId::parse(raw).ok_or_else(|| ApiError::not_found("attempt"))
}

/// `GET /v1/attempts` (and `payd attempts list`).
pub async fn list(ctx: &Ctx, viewer: &Viewer, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::list(query, &["status", "payment_id", "merchant_id"])?;
    let status = q.parsed("status", AttemptStatus::parse, AttemptStatus::names)?;
    let payment_id = q
        .string("payment_id")
        .map(|p| {
            PaymentId::parse(&p)
                .ok_or_else(|| ApiError::invalid("payment_id", "payment_id must be a payment id (pay_…)"))
        })
        .transpose()?;
    let merchant_id = merchant_filter(viewer, q.string("merchant_id"))?;
    let (limit, cursor) = (q.limit()?, q.cursor(AttemptId::parse, ATTEMPT_ID)?);
    page(ctx, viewer, &AttemptFilter { status, payment_id, merchant_id, limit, cursor }).await
}

/// `GET /v1/payments/{id}/attempts`
pub async fn of_payment(
    ctx: &Ctx,
    viewer: &Viewer,
    id: &str,
    query: HashMap<String, String>,
) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let mut q = Query::list(query, &[])?;
    let mut conn = ctx.db.acquire().await?;
    store::find_visible(&mut conn, viewer, &id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    drop(conn);
    let (limit, cursor) = (q.limit()?, q.cursor(AttemptId::parse, ATTEMPT_ID)?);
    page(ctx, viewer, &AttemptFilter { payment_id: Some(id), limit, cursor, ..AttemptFilter::default() }).await
}

/// What an attempt id looks like, for errors.
const ATTEMPT_ID: &str = "an attempt id (att_…)";

async fn page(ctx: &Ctx, viewer: &Viewer, filter: &AttemptFilter) -> Result<Value, ApiError> {
    let (rows, more, total) =
        attempts::list(&ctx.db, viewer, filter).await?.ok_or_else(|| unknown_cursor(&filter.cursor, "attempt"))?;
    list_body(&rows, more, total)
}

/// `POST /v1/attempts/{id}/cancel` (and `payd attempts cancel`).
pub async fn cancel(ctx: &Ctx, viewer: &Viewer, actor: &str, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = parse_attempt_id(id)?;
    let mut f = Fields::new(body, &["reason"])?;
    let reason = f.optional_string("reason", REASON_MAX)?;
    let mut tx = ctx.db.begin().await?;
    crate::db::audit::act(&mut tx, actor, "attempt.cancel").await?;
    let found = attempts::find(&mut tx, viewer, &id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    // Lock order everywhere: payment, then attempt.
    let payment = store::lock_by_id(&mut tx, &found.payment_id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    // The retry (or inquiry) of a call that may have succeeded is not
    // canceled: failing the payment could hide a charge (contract §12).
    if txns::is_unknown(&mut tx, &found.transaction_id).await? {
        return Err(ApiError::outcome_unknown());
    }
    let Some(canceled) = attempts::cancel_one(&mut tx, &id, reason.as_deref()).await? else {
        let now = attempts::status_of(&mut tx, &id).await?;
        return Err(ApiError::new(
            409,
            ErrorCode::AttemptNotScheduled,
            format!("only a scheduled attempt can be canceled; this one is {now}"),
        ));
    };
    let message = reason.clone().unwrap_or_else(|| "the scheduled retry was canceled".to_owned());
    let failure = Some((FailureCode::RetryCanceled, message.as_str()));
    txns::settle(&mut tx, &canceled.transaction_id, TransactionStatus::Failed, None, failure).await?;
    let txn = txns::get(&mut tx, &canceled.transaction_id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    if txn.kind.is_charge() {
        let transition = domain::payment::charge_failed(payment.status)?;
        let row = changes::fail(&mut tx, &payment.id, transition, FailureCode::RetryCanceled, &message)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow!("payment {} changed while locked", payment.id)))?;
        let scope = Scope::system(row.merchant_id.clone(), row.livemode);
        let view = store::view(&mut tx, row).await?;
        events::record(&mut tx, &scope, transition.event, &view).await?;
        crate::observe::transition(transition.from.as_str(), transition.to.as_str());
    } else if txn.kind == TransactionKind::Capture {
        // The capture will not happen: what it reserved is capturable again.
        changes::release_capture(&mut tx, &payment.id, txn.amount).await?;
    }
    tx.commit().await?;
    crate::db::notify::ring(&ctx.db, crate::db::notify::DELIVERIES);
    crate::db::notify::ring_with(&ctx.db, crate::db::notify::PAYMENT_STATUS, payment.id.as_str());
    to_json(&canceled)
}
