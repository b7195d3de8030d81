//! Payment use cases: create, retrieve, list and search. Changes of an
//! existing payment are in [`super::lifecycle`] (money) and
//! [`super::details`] (metadata, tags, history).

use std::collections::HashMap;
use std::sync::Arc;

use super::idempotency::in_flight;
use super::params::{Fields, Query, unknown_cursor};
use super::{ApiError, Ctx, ErrorCode, IdempotencyKey, Outcome, list_body, to_json};
use crate::db::creates::Draft;
use crate::db::payments::{self as store, ListFilter, NewPayment, Payment, PaymentRow};
use crate::db::{self, payment_methods};
use crate::domain::{
    Amount, AttemptId, Currency, EventId, MerchantId, MethodKind, PaymentId, PaymentMethodId, PaymentStatus, Scope,
    TransactionId, TransactionKind, Viewer, WorkMessage,
};
use crate::provider::SandboxMethod;
use serde_json::Value;

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
                "amount",
                "currency",
                "payment_method_id",
                "description",
                "metadata",
                "capture",
                "reference",
                "external_key",
                "customer_id",
            ],
        )?;
        let amount = f.amount("amount")?;
        let currency = f.string("currency", 3).map_err(|e| match e.code {
            ErrorCode::ParameterMissing => e,
            _ => ApiError::invalid("currency", "currency must be a three-letter ISO 4217 code"),
        })?;
        let currency = Currency::parse(&currency)
            .ok_or_else(|| ApiError::invalid("currency", format!("{currency} is not an ISO 4217 currency code")))?;
        let payment_method_id = f.string("payment_method_id", REFERENCE_MAX)?;
        let description = f.optional_string("description", DESCRIPTION_MAX)?;
        let metadata = f.metadata("metadata")?;
        let capture = f.optional_bool("capture")?.unwrap_or(true);
        let reference = f.optional_string("reference", REFERENCE_MAX)?;
        let external_key = f.optional_string("external_key", EXTERNAL_KEY_MAX)?;
        let customer_id = f.optional_string("customer_id", REFERENCE_MAX)?;
        Ok(Self {
            amount,
            currency,
            payment_method_id,
            description,
            metadata,
            capture,
            reference,
            external_key,
            customer_id,
        })
    }
}

/// Creates a pending payment: the payment, its purchase (or, with
/// `capture: false`, authorize) transaction, its first attempt, the
/// `payment.created` event and the work message, in one statement written
/// with the creates of concurrent requests (group commit), together with
/// the `Idempotency-Key`'s answer when there is one. Answers 201 with the
/// payment.
pub async fn create(
    ctx: &Ctx,
    scope: &Scope,
    req: CreatePayment,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    if let Some(key) = key
        && let Some(replayed) = key.peek(ctx, scope).await?
    {
        return Ok(replayed);
    }
    let new = new_payment(ctx, scope, req).await?;
    let draft = Arc::new(draft(new, scope, key)?);
    let payment = match ctx.creates.insert(draft.clone()).await {
        Ok(Some(row)) => created(row, &draft),
        // A concurrent request with the same key was written first: its
        // answer is this one's (or the key was used for another request).
        Ok(None) => {
            let key =
                key.ok_or_else(|| ApiError::internal(anyhow::anyhow!("a create without a key was not written")))?;
            return key.peek(ctx, scope).await?.ok_or_else(in_flight);
        }
        Err(e) => return Err(refused(ctx, scope, &draft.payment, e).await),
    };
    db::notify::ring(&ctx.db, db::notify::OUTBOX);
    db::notify::ring_events(&ctx.db, [draft.event_id.as_str()]);
    Ok(Outcome { status: 201, body: to_json(&payment)? })
}

/// The payment with its transaction, attempt, work message and event, ready
/// to insert (see [`crate::db::creates`]).
fn draft(new: NewPayment, scope: &Scope, key: Option<&IdempotencyKey>) -> Result<Draft, ApiError> {
    let attempt_id = AttemptId::generate();
    let message = WorkMessage::run(&attempt_id);
    let event_data = serde_json::json!({ "object": to_json(&Payment::new(new.draft_row(), Vec::new()))? });
    Ok(Draft {
        kind: TransactionKind::charge(new.capture),
        payment: new,
        transaction_id: TransactionId::generate(),
        attempt_id,
        message,
        event_id: EventId::generate(),
        event_data,
        key: key.map(|k| k.record(scope)),
    })
}

/// The inserted payment, logged and counted.
fn created(row: PaymentRow, draft: &Draft) -> Payment {
    tracing::info!(event_id = %draft.event_id, payment_id = %row.id, r#type = "payment.created", "event recorded");
    crate::observe::transition("new", "pending");
    // A new payment has no refunds: no need to read them.
    Payment::new(row, Vec::new())
}

/// The checked request as a row to insert, with its payment method resolved.
async fn new_payment(ctx: &Ctx, scope: &Scope, req: CreatePayment) -> Result<NewPayment, ApiError> {
    let (provider, method) = resolve_method(ctx, scope, &req.payment_method_id).await?;
    let currency = req.currency.code();
    if ctx.settings.providers.get(&provider).is_some_and(|p| !p.supports(currency)) {
        return Err(ApiError::new(
            422,
            ErrorCode::CurrencyNotSupported,
            format!("provider {provider} does not take payments in {currency}"),
        )
        .with_param("currency"));
    }
    Ok(NewPayment {
        id: PaymentId::generate(),
        scope: scope.clone(),
        amount: req.amount,
        currency: req.currency,
        capture: req.capture,
        payment_method_id: req.payment_method_id,
        provider,
        method,
        description: req.description,
        reference: req.reference,
        external_key: req.external_key,
        customer_id: req.customer_id,
        metadata: req.metadata,
    })
}

/// The contract's answer to a failed insert: 409 for a used external_key,
/// 422 naming the pending payment when a concurrent create won the reference.
/// Callers release their connection first: looking up the winner needs one,
/// and holding two per request could starve the pool under a burst.
async fn refused(ctx: &Ctx, scope: &Scope, new: &NewPayment, e: sqlx::Error) -> ApiError {
    if db::is_unique_violation(&e, "payments_external_key") {
        return ApiError::new(409, ErrorCode::ExternalKeyInUse, "a payment with this external_key already exists")
            .with_param("external_key");
    }
    if !db::is_unique_violation(&e, "payments_pending_reference") {
        return e.into();
    }
    let pending = async {
        let mut conn = ctx.db.acquire().await?;
        store::pending_with_reference(&mut conn, scope, new.reference.as_deref().unwrap_or_default()).await
    };
    match pending.await {
        Ok(Some(p)) => pending_exists(&p),
        Ok(None) => ApiError::new(422, ErrorCode::PendingPaymentExists, "a pending payment exists for this reference")
            .with_param("reference"),
        Err(e) => e.into(),
    }
}

/// The provider and method type of a payment method usable in this mode:
/// a sandbox test method (test mode only) or a stored method.
async fn resolve_method(ctx: &Ctx, scope: &Scope, id: &str) -> Result<(String, MethodKind), ApiError> {
    let missing = || ApiError::not_found_param(format!("no such payment method: {id}"), "payment_method_id");
    if SandboxMethod::parse(id).is_some() {
        return if scope.livemode { Err(missing()) } else { Ok(("sandbox".into(), MethodKind::Card)) };
    }
    let id = PaymentMethodId::parse(id).ok_or_else(missing)?;
    let mut conn = ctx.db.acquire().await?;
    let method = payment_methods::find(&mut conn, scope, &id).await?.ok_or_else(missing)?;
    if ctx.providers.needs_account(&method.provider) {
        // The account that issued the method must still be connected.
        let connected = match &method.provider_account_id {
            Some(account) => db::provider_accounts::is_active(&mut conn, scope, account).await?,
            None => false,
        };
        if !connected {
            return Err(super::payment_methods::not_configured(&method.provider, scope.livemode));
        }
    }
    if !ctx.providers.serves(&method.provider, scope.livemode) {
        return Err(ApiError::new(
            422,
            ErrorCode::ProviderUnavailable,
            format!("provider {} is not configured on this payd", method.provider),
        )
        .with_param("payment_method_id"));
    }
    Ok((method.provider, method.kind))
}

fn pending_exists(pending: &PaymentId) -> ApiError {
    ApiError::new(
        422,
        ErrorCode::PendingPaymentExists,
        format!("payment {pending} for this reference is still pending"),
    )
    .with_param("reference")
}

/// What a payment id looks like, for errors.
pub const PAYMENT_ID: &str = "a payment id (pay_…)";

/// A payment id from a path; unknown shapes are simply not found.
pub fn parse_id(raw: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse(raw).ok_or_else(|| ApiError::not_found("payment"))
}

/// `GET /v1/payments/{id}` (merchants see their own, operators every one).
pub async fn retrieve(ctx: &Ctx, viewer: &Viewer, id: &str) -> Result<Payment, ApiError> {
    let id = parse_id(id)?;
    let mut conn = ctx.db.acquire().await?;
    let row = store::find_visible(&mut conn, viewer, &id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    Ok(store::view(&mut conn, row).await?)
}

/// `GET /v1/payments`
pub async fn list(ctx: &Ctx, viewer: &Viewer, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::list(
        query,
        &["status", "created_after", "created_before", "external_key", "reference", "customer_id", "merchant_id"],
    )?;
    let status = q.parsed("status", PaymentStatus::parse, PaymentStatus::names)?;
    let filter = ListFilter {
        status,
        created_after: q.timestamp("created_after")?,
        created_before: q.timestamp("created_before")?,
        external_key: q.string("external_key"),
        reference: q.string("reference"),
        customer_id: q.string("customer_id"),
        merchant_id: merchant_filter(viewer, q.string("merchant_id"))?,
        search: None,
        limit: q.limit()?,
        cursor: q.cursor(PaymentId::parse, PAYMENT_ID)?,
    };
    page(ctx, viewer, &filter).await
}

/// `GET /v1/payments/search?query=…`: the payment with that id, or those
/// whose external_key, reference, customer_id or description contain it.
pub async fn search(ctx: &Ctx, viewer: &Viewer, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::list(query, &["query", "merchant_id"])?;
    let text = q.string("query").filter(|t| !t.trim().is_empty()).ok_or_else(|| ApiError::missing("query"))?;
    if text.chars().count() > REFERENCE_MAX {
        return Err(ApiError::invalid("query", format!("query must be at most {REFERENCE_MAX} characters")));
    }
    let filter = ListFilter {
        merchant_id: merchant_filter(viewer, q.string("merchant_id"))?,
        search: Some(text),
        limit: q.limit()?,
        cursor: q.cursor(PaymentId::parse, PAYMENT_ID)?,
        ..ListFilter::default()
    };
    page(ctx, viewer, &filter).await
}

/// `merchant_id=` narrows an operator's lists; merchants may not send it.
pub fn merchant_filter(viewer: &Viewer, raw: Option<String>) -> Result<Option<MerchantId>, ApiError> {
    match (raw, viewer) {
        (None, _) => Ok(None),
        (Some(_), Viewer::Merchant(_)) => {
            Err(ApiError::forbidden("merchant_id is for operator keys").with_param("merchant_id"))
        }
        (Some(m), Viewer::Operator) => MerchantId::parse(&m)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("merchant_id", "merchant_id must be a merchant id (mer_…)")),
    }
}

async fn page(ctx: &Ctx, viewer: &Viewer, filter: &ListFilter) -> Result<Value, ApiError> {
    let (rows, more, total) =
        store::list(&ctx.db, viewer, filter).await?.ok_or_else(|| unknown_cursor(&filter.cursor, "payment"))?;
    let mut conn = ctx.db.acquire().await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        data.push(store::view(&mut conn, row).await?);
    }
    list_body(&data, more, total)
}
