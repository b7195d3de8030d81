//! Attempts: listing them, and cancelling a scheduled one (operators, or the
//! owning merchant). A canceled attempt never runs; its payment fails with
//! `retry_canceled` and `payment.failed` is sent.

use std::collections::HashMap;

use serde_json::Value;

use super::params::{Fields, Query};
use super::payments::{REASON_MAX, merchant_filter, parse_id};
use super::{Ctx, list_body, to_json};
use crate::db::attempts::{self, AttemptFilter, Viewer};
use crate::db::payments::{self as store, PaymentRow, Scope};
use crate::db::{events, transactions as txns};
use crate::domain::{self, AttemptId};
use crate::error::ApiError;

/// The attempt statuses.
pub const STATUSES: [&str; 5] = ["scheduled", "running", "succeeded", "failed", "canceled"];

fn parse_attempt_id(raw: &str) -> Result<AttemptId, ApiError> {
    AttemptId::parse(raw).ok_or_else(|| ApiError::not_found("attempt"))
}

/// `GET /v1/attempts` (and `payd attempts list`).
pub async fn list(ctx: &Ctx, viewer: &Viewer, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::new(query, &["status", "payment_id", "merchant_id", "limit", "offset"])?;
    let status = q.string("status");
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::invalid("status", format!("status must be one of {}", STATUSES.join(", "))));
    }
    let payment_id = q
        .string("payment_id")
        .map(|p| {
            domain::PaymentId::parse(&p)
                .ok_or_else(|| ApiError::invalid("payment_id", "payment_id must be a payment id (pay_…)"))
        })
        .transpose()?;
    let merchant_id = merchant_filter(viewer, q.string("merchant_id"))?;
    let filter = AttemptFilter { status, payment_id, merchant_id, limit: q.limit()?, offset: q.offset()? };
    let (rows, total) = attempts::list(&ctx.db, viewer, &filter).await?;
    list_body(&rows, filter.offset, total)
}

/// `GET /v1/payments/{id}/attempts`
pub async fn of_payment(
    ctx: &Ctx,
    viewer: &Viewer,
    id: &str,
    query: HashMap<String, String>,
) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let mut q = Query::new(query, &["limit", "offset"])?;
    let mut conn = ctx.db.acquire().await?;
    store::find_visible(&mut conn, viewer, &id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    drop(conn);
    let filter =
        AttemptFilter { payment_id: Some(id), limit: q.limit()?, offset: q.offset()?, ..AttemptFilter::default() };
    let (rows, total) = attempts::list(&ctx.db, viewer, &filter).await?;
    list_body(&rows, filter.offset, total)
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
    let Some(canceled) = attempts::cancel_one(&mut tx, &id, reason.as_deref()).await? else {
        let now: String =
            sqlx::query_scalar("SELECT status FROM attempts WHERE id = $1").bind(&id).fetch_one(&mut *tx).await?;
        return Err(ApiError::new(
            409,
            "attempt_not_scheduled",
            format!("only a scheduled attempt can be canceled; this one is {now}"),
        ));
    };
    let message = reason.clone().unwrap_or_else(|| "the scheduled retry was canceled".to_owned());
    txns::settle(&mut tx, &canceled.transaction_id, "failed", None, Some(("retry_canceled", &message))).await?;
    let txn = txns::get(&mut tx, &canceled.transaction_id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    if matches!(txn.kind.as_str(), "purchase" | "authorize") {
        let transition = domain::payment::charge_failed(payment.status())?;
        let row: PaymentRow = sqlx::query_as(
            "UPDATE payments SET status = $2, error_code = 'retry_canceled', failure_message = $3, next_attempt_at = NULL,
                 updated_at = now()
             WHERE id = $1 AND status = $4 RETURNING *",
        )
        .bind(&payment.id)
        .bind(transition.to.as_str())
        .bind(&message)
        .bind(transition.from.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let scope = Scope::system(row.merchant_id.clone(), row.livemode);
        let view = store::view(&mut tx, row).await?;
        events::record(&mut tx, &scope, transition.event, &view).await?;
        crate::observe::transition(transition.from.as_str(), transition.to.as_str());
    } else if txn.kind == "capture" {
        // The capture will not happen: what it reserved is capturable again.
        sqlx::query("UPDATE payments SET amount_capturable = amount_capturable + $2, updated_at = now() WHERE id = $1")
            .bind(&payment.id)
            .bind(txn.amount)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    crate::db::notify::ring(&ctx.db, crate::db::notify::DELIVERIES);
    crate::db::notify::ring_with(&ctx.db, crate::db::notify::PAYMENT_STATUS, payment.id.as_str());
    to_json(&canceled)
}
