//! Payment use cases: create, retrieve, list, cancel, refund.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgConnection;

use super::params::{Fields, Query};
use super::{Ctx, IdempotencyKey, Outcome, list_body, remember, replay, to_json};
use crate::db::payments::{self as store, ListFilter, NewPayment, Payment, PaymentRow, Scope};
use crate::db::{self, attempts, events, outbox};
use crate::domain::{self, Amount, Currency, EventType, PaymentId, PaymentStatus, TransactionId};
use crate::error::ApiError;
use crate::queue::messages::{ATTEMPTS_QUEUE, WorkMessage};

/// Longest `description`.
pub const DESCRIPTION_MAX: usize = 1000;
/// Longest `reference` and `customer_id`.
pub const REFERENCE_MAX: usize = 255;
/// Longest `external_key` (contract §4).
pub const EXTERNAL_KEY_MAX: usize = 64;
/// Longest cancellation or refund `reason`.
pub const REASON_MAX: usize = 500;

/// A checked `POST /v1/payments` body.
#[derive(Clone, Debug)]
pub struct CreatePayment {
    pub amount: Amount,
    pub currency: Currency,
    pub payment_method_id: String,
    pub description: Option<String>,
    pub metadata: Value,
    pub capture: bool,
    pub reference: Option<String>,
    pub external_key: Option<String>,
    pub customer_id: Option<String>,
}

impl CreatePayment {
    /// Parses the body; every error names its field.
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let mut f = Fields::new(
            body,
            &[
                "amount", "currency", "payment_method_id", "description", "metadata", "capture", "reference",
                "external_key", "customer_id",
            ],
        )?;
        let amount = f.amount("amount")?;
        let currency = f.string("currency", 3).map_err(|e| match e.code.as_ref() {
            "parameter_missing" => e,
            _ => ApiError::invalid("currency", "currency must be a three-letter ISO 4217 code"),
        })?;
        let currency = Currency::parse(&currency)
            .ok_or_else(|| ApiError::invalid("currency", format!("{currency} is not an ISO 4217 currency code")))?;
        let payment_method_id = f.string("payment_method_id", REFERENCE_MAX)?;
        let description = f.optional_string("description", DESCRIPTION_MAX)?;
        let metadata = f.metadata("metadata")?;
        let capture = f.optional_bool("capture")?.unwrap_or(true);
        if !capture {
            // Two-stage payments (authorize now, capture later) are not built yet.
            return Err(ApiError::invalid("capture", "capture: false is not supported yet"));
        }
        let reference = f.optional_string("reference", REFERENCE_MAX)?;
        let external_key = f.optional_string("external_key", EXTERNAL_KEY_MAX)?;
        let customer_id = f.optional_string("customer_id", REFERENCE_MAX)?;
        Ok(Self { amount, currency, payment_method_id, description, metadata, capture, reference, external_key, customer_id })
    }
}

/// Creates a pending payment: the payment, its purchase transaction, its
/// first attempt, the `payment.created` event and the work message, in one
/// transaction. Answers 201 with the payment.
pub async fn create(
    ctx: &Ctx,
    scope: &Scope,
    req: CreatePayment,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let method = ctx.providers.resolve(&req.payment_method_id, scope.livemode).ok_or_else(|| {
        ApiError::new(404, "resource_missing", format!("no such payment method: {}", req.payment_method_id))
            .with_param("payment_method_id")
    })?;
    let mut tx = ctx.db.begin().await?;
    if let Some(replayed) = replay(&mut tx, &scope.merchant_id, key).await? {
        return Ok(replayed);
    }
    if let Some(reference) = &req.reference
        && let Some(pending) = store::pending_with_reference(&mut tx, scope, reference).await? {
            return Err(pending_exists(&pending));
        }
    let new = NewPayment {
        id: PaymentId::generate(),
        scope: scope.clone(),
        amount: req.amount,
        currency: req.currency.code().to_owned(),
        capture: req.capture,
        payment_method_id: req.payment_method_id,
        provider: method.provider,
        method: method.method.to_owned(),
        description: req.description,
        reference: req.reference.clone(),
        external_key: req.external_key,
        customer_id: req.customer_id,
        metadata: req.metadata,
    };
    let row = match store::insert(&mut tx, &new).await {
        Ok(row) => row,
        Err(e) if db::is_unique_violation(&e, "payments_external_key") => {
            return Err(ApiError::new(409, "external_key_in_use", "a payment with this external_key already exists")
                .with_param("external_key"));
        }
        Err(e) if db::is_unique_violation(&e, "payments_pending_reference") => {
            // A concurrent create won the race for this reference.
            drop(tx);
            let mut conn = ctx.db.acquire().await?;
            let pending = store::pending_with_reference(&mut conn, scope, req.reference.as_deref().unwrap_or_default()).await?;
            return Err(pending.map_or_else(
                || ApiError::new(422, "pending_payment_exists", "a pending payment exists for this reference"),
                |p| pending_exists(&p),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let txn = store::insert_transaction(&mut tx, &row.id, "purchase", req.amount, &row.currency).await?;
    schedule_attempt(&mut tx, &row.id, &txn).await?;
    let payment = store::view(&mut tx, row).await?;
    events::record(&mut tx, scope, EventType::PaymentCreated, &payment).await?;
    let outcome = Outcome { status: 201, body: to_json(&payment)? };
    remember(&mut tx, &scope.merchant_id, key, &outcome).await?;
    tx.commit().await?;
    Ok(outcome)
}

fn pending_exists(pending: &PaymentId) -> ApiError {
    ApiError::new(
        422,
        "pending_payment_exists",
        format!("payment {pending} for this reference is still pending"),
    )
    .with_param("reference")
}

/// Adds attempt #1 of a transaction and its work message.
async fn schedule_attempt(conn: &mut PgConnection, payment: &PaymentId, txn: &TransactionId) -> Result<(), ApiError> {
    let attempt_id = attempts::insert(conn, payment, txn, 1).await?;
    let msg = to_json(&WorkMessage::RunAttempt { attempt_id })?;
    outbox::enqueue(conn, ATTEMPTS_QUEUE, &msg).await?;
    Ok(())
}

/// A payment id from a path; unknown shapes are simply not found.
pub fn parse_id(raw: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse(raw).ok_or_else(|| ApiError::not_found("payment"))
}

async fn locked(conn: &mut PgConnection, scope: &Scope, id: &PaymentId) -> Result<PaymentRow, ApiError> {
    store::find(conn, scope, id, true).await?.ok_or_else(|| ApiError::not_found("payment"))
}

/// `GET /v1/payments/{id}`
pub async fn retrieve(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Payment, ApiError> {
    let id = parse_id(id)?;
    let mut conn = ctx.db.acquire().await?;
    let row = store::find(&mut conn, scope, &id, false).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    Ok(store::view(&mut conn, row).await?)
}

/// `GET /v1/payments`
pub async fn list(ctx: &Ctx, scope: &Scope, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::new(
        query,
        &["limit", "offset", "status", "created_after", "created_before", "external_key", "reference", "customer_id"],
    )?;
    let status = match q.string("status") {
        None => None,
        Some(s) => Some(PaymentStatus::parse(&s).ok_or_else(|| {
            ApiError::invalid("status", format!("status must be one of {}", status_names()))
        })?),
    };
    let filter = ListFilter {
        status,
        created_after: q.timestamp("created_after")?,
        created_before: q.timestamp("created_before")?,
        external_key: q.string("external_key"),
        reference: q.string("reference"),
        customer_id: q.string("customer_id"),
        limit: q.limit()?,
        offset: q.offset()?,
    };
    let (rows, total) = store::list(&ctx.db, scope, &filter).await?;
    let mut conn = ctx.db.acquire().await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        data.push(store::view(&mut conn, row).await?);
    }
    list_body(&data, filter.offset, total)
}

fn status_names() -> String {
    PaymentStatus::ALL.map(PaymentStatus::as_str).join(", ")
}

/// `POST /v1/payments/{id}/cancel`: from `pending`, cancels the scheduled
/// attempt so no provider call happens afterwards.
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
    let mut tx = ctx.db.begin().await?;
    if let Some(replayed) = replay(&mut tx, &scope.merchant_id, key).await? {
        return Ok(replayed);
    }
    let row = locked(&mut tx, scope, &id).await?;
    let transition = domain::payment::cancel(row.status())?;
    if let Some(txn) = attempts::charge_transaction(&mut tx, &id).await? {
        attempts::cancel_scheduled(&mut tx, &txn).await?;
        // Checked after the cancel above took the row locks: a worker that
        // claimed first is visible here, one that claims later finds nothing.
        if attempts::running_exists(&mut tx, &txn).await? {
            return Err(domain::Refusal::Processing.into());
        }
        store::settle_transaction(&mut tx, &txn, "canceled", None, None).await?;
    }
    let row: PaymentRow = sqlx::query_as(
        "UPDATE payments SET status = $2, canceled_at = now(), cancellation_reason = $3, next_attempt_at = NULL,
             updated_at = now()
         WHERE id = $1 AND status = $4 RETURNING *",
    )
    .bind(&id)
    .bind(transition.to.as_str())
    .bind(&reason)
    .bind(transition.from.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let payment = store::view(&mut tx, row).await?;
    events::record(&mut tx, scope, transition.event, &payment).await?;
    let outcome = Outcome { status: 200, body: to_json(&payment)? };
    remember(&mut tx, &scope.merchant_id, key, &outcome).await?;
    tx.commit().await?;
    Ok(outcome)
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
    let mut tx = ctx.db.begin().await?;
    if let Some(replayed) = replay(&mut tx, &scope.merchant_id, key).await? {
        return Ok(replayed);
    }
    let row = locked(&mut tx, scope, &id).await?;
    let pending = store::pending_refunds(&mut tx, &id).await?;
    let balances = row.balances(pending).ok_or_else(|| ApiError::internal(anyhow::anyhow!("payment {id} has a bad amount")))?;
    let amount = domain::payment::refund(row.status(), balances, requested)?;
    let txn = store::insert_transaction(&mut tx, &id, "refund", amount, &row.currency).await?;
    let refund_id = domain::RefundId::generate();
    sqlx::query("INSERT INTO refunds (id, payment_id, transaction_id, reason) VALUES ($1, $2, $3, $4)")
        .bind(&refund_id)
        .bind(&id)
        .bind(&txn)
        .bind(&reason)
        .execute(&mut *tx)
        .await?;
    schedule_attempt(&mut tx, &id, &txn).await?;
    let refund = store::refund(&mut tx, &refund_id).await?.ok_or_else(|| ApiError::internal(anyhow::anyhow!("refund vanished")))?;
    let outcome = Outcome { status: 200, body: to_json(&refund)? };
    remember(&mut tx, &scope.merchant_id, key, &outcome).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// `POST /v1/payments/{id}/capture` (and the `payment.capture` command).
/// Only a `requires_capture` payment can be captured, and payd does not
/// authorize without capturing yet, so this answers the state refusal.
pub async fn capture(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["amount"])?;
    f.optional_amount("amount")?;
    let mut tx = ctx.db.begin().await?;
    if let Some(replayed) = replay(&mut tx, &scope.merchant_id, key).await? {
        return Ok(replayed);
    }
    let row = locked(&mut tx, scope, &id).await?;
    domain::payment::capture(row.status())?;
    Err(ApiError::internal(anyhow::anyhow!("payment {id} is requires_capture, which payd never creates")))
}
