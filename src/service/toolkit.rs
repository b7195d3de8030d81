//! The operator toolkit on scheduled attempts (contract §14): run one now,
//! move it to another time, cancel many at once. Operator keys act on every
//! merchant's attempts, a merchant's secret key on its own. Every change is
//! audited with its actor and reason, and guarded by `status = 'scheduled'`
//! so a worker claiming the same attempt at the same moment cannot race it.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::params::Fields;
use super::payments::REASON_MAX;
use super::{ApiError, Ctx, ErrorCode, to_json};
use crate::db::bulk::{self, BulkFilter};
use crate::db::payments::{self as store, Payment};
use crate::db::{attempts, audit, events, notify, operators, outbox, payment_changes as changes};
use crate::domain::messages::ATTEMPTS_QUEUE;
use crate::domain::{
    self, AttemptId, AttemptStatus, FailureCode, MerchantId, PaymentStatus, Scope, TransactionKind, Viewer, WorkMessage,
};

/// How far in the past a reschedule's `at` may be (clock skew between the
/// operator and payd): it means "now".
pub const PAST_TOLERANCE: Duration = Duration::from_secs(60);
/// How far ahead a retry may be moved: beyond, it is a typo.
pub const FUTURE_MAX: Duration = Duration::from_secs(90 * 24 * 3600);
/// Attempts cancelled per transaction by a bulk cancel: a batch's locks
/// are held briefly, so workers and the API never wait long behind one.
pub const BULK_BATCH: i64 = 500;

fn parse_attempt_id(raw: &str) -> Result<AttemptId, ApiError> {
    AttemptId::parse(raw).ok_or_else(|| ApiError::not_found("attempt"))
}

fn not_scheduled(what: &str, now: AttemptStatus) -> ApiError {
    ApiError::new(
        409,
        ErrorCode::AttemptNotScheduled,
        format!("only a scheduled attempt can be {what}; this one is {now}"),
    )
}

/// `POST /v1/attempts/{id}/retry_now` (and `payd attempts retry-now`): the
/// attempt is due now and its work message is written to the outbox in the
/// same transaction, so a worker runs it at once.
pub async fn retry_now(ctx: &Ctx, viewer: &Viewer, actor: &str, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = parse_attempt_id(id)?;
    let mut f = Fields::new(body, &["reason"])?;
    let reason = f.optional_string("reason", REASON_MAX)?.unwrap_or_default();
    let mut tx = ctx.db.begin().await?;
    audit::act_because(&mut tx, actor, "attempt.retry_now", &reason).await?;
    let found = attempts::find(&mut tx, viewer, &id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    // Lock order everywhere: payment, then attempt.
    store::lock_by_id(&mut tx, &found.payment_id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    let Some(moved) = operators::retry_now(&mut tx, &id).await? else {
        return Err(not_scheduled("retried now", attempts::status_of(&mut tx, &id).await?));
    };
    outbox::enqueue(&mut tx, ATTEMPTS_QUEUE, &WorkMessage::run(&id)).await?;
    changes::move_next_attempt(&mut tx, &moved.payment_id, moved.scheduled_at).await?;
    tx.commit().await?;
    notify::ring(&ctx.db, notify::OUTBOX);
    tracing::info!(attempt_id = %id, payment_id = %moved.payment_id, %actor, "operator: retry now");
    to_json(&moved)
}

/// `POST /v1/attempts/{id}/reschedule` (`at`*; and `payd attempts
/// reschedule`): the attempt becomes due at `at`. A time more than
/// [`PAST_TOLERANCE`] ago or more than [`FUTURE_MAX`] ahead is refused (400).
pub async fn reschedule(ctx: &Ctx, viewer: &Viewer, actor: &str, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = parse_attempt_id(id)?;
    let mut f = Fields::new(body, &["at", "reason"])?;
    let at = timestamp(&mut f, "at")?.ok_or_else(|| ApiError::missing("at"))?;
    let reason = f.optional_string("reason", REASON_MAX)?.unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    if at < now - PAST_TOLERANCE {
        return Err(ApiError::invalid("at", "at is in the past: use retry_now to run the attempt now"));
    }
    if at > now + FUTURE_MAX {
        return Err(ApiError::invalid("at", "at must be within 90 days"));
    }
    let at = at.max(now);
    let mut tx = ctx.db.begin().await?;
    audit::act_because(&mut tx, actor, "attempt.reschedule", &reason).await?;
    let found = attempts::find(&mut tx, viewer, &id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    store::lock_by_id(&mut tx, &found.payment_id).await?.ok_or_else(|| ApiError::not_found("attempt"))?;
    let Some(moved) = operators::reschedule(&mut tx, &id, at).await? else {
        return Err(not_scheduled("rescheduled", attempts::status_of(&mut tx, &id).await?));
    };
    changes::move_next_attempt(&mut tx, &moved.payment_id, moved.scheduled_at).await?;
    tx.commit().await?;
    tracing::info!(attempt_id = %id, payment_id = %moved.payment_id, %actor, "operator: attempt rescheduled");
    to_json(&moved)
}

/// An optional RFC 3339 field.
pub(super) fn timestamp(f: &mut Fields, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    f.optional_string(name, 64)?
        .map(|v| {
            crate::timefmt::parse(&v)
                .ok_or_else(|| ApiError::invalid(name, format!("{name} must be an RFC 3339 timestamp")))
        })
        .transpose()
}

/// `filter.merchant_id`: any merchant for an operator; a merchant key's own
/// only (and its mode), another's is refused.
fn bulk_scope(viewer: &Viewer, raw: Option<String>) -> Result<(Option<MerchantId>, Option<bool>), ApiError> {
    let parsed = raw
        .map(|m| {
            MerchantId::parse(&m)
                .ok_or_else(|| ApiError::invalid("filter.merchant_id", "merchant_id must be a merchant id (mer_…)"))
        })
        .transpose()?;
    match viewer {
        Viewer::Operator => Ok((parsed, None)),
        Viewer::Merchant(scope) => match parsed {
            Some(m) if m != scope.merchant_id => Err(ApiError::forbidden(
                "a merchant key may only cancel its own attempts: leave filter.merchant_id out",
            )
            .with_param("filter.merchant_id")),
            _ => Ok((Some(scope.merchant_id.clone()), Some(scope.livemode))),
        },
    }
}

/// `POST /v1/attempts/bulk_cancel` (and `payd attempts bulk-cancel`):
/// cancels every matching scheduled attempt, as the single cancel does to
/// each (its payment fails with `retry_canceled`, `payment.failed` is
/// sent), in transactions of [`BULK_BATCH`] attempts. `matched` counts the
/// attempts that matched when it started (at least those it canceled);
/// retries of calls whose outcome is unknown are never taken (contract §12).
pub async fn bulk_cancel(ctx: &Ctx, viewer: &Viewer, actor: &str, body: Value) -> Result<Value, ApiError> {
    const FILTER: [&str; 5] = ["merchant_id", "provider", "error_code", "scheduled_before", "scheduled_after"];
    let mut f = Fields::new(body, &["filter", "reason", "dry_run"])?;
    let mut filter = f.object("filter", &FILTER)?;
    let reason = f.string("reason", REASON_MAX)?;
    let dry_run = f.optional_bool("dry_run")?.unwrap_or(false);
    let (merchant_id, livemode) = bulk_scope(viewer, filter.optional_string("merchant_id", 64)?)?;
    let error_code = filter.optional_string("error_code", 64)?;
    if let Some(code) = &error_code
        && FailureCode::parse(code).is_none()
    {
        return Err(ApiError::invalid("filter.error_code", format!("filter.error_code: unknown error code {code}")));
    }
    let filter = BulkFilter {
        merchant_id,
        livemode,
        provider: filter.optional_string("provider", 64)?,
        error_code,
        scheduled_before: timestamp(&mut filter, "scheduled_before")?,
        scheduled_after: timestamp(&mut filter, "scheduled_after")?,
    };
    let matched = bulk::count(&mut *ctx.db.acquire().await?, &filter).await?;
    if dry_run {
        return Ok(json!({"matched": matched, "canceled": 0}));
    }
    let mut canceled = 0i64;
    while let Some(n) = cancel_batch(ctx, &filter, actor, &reason).await? {
        canceled += n;
    }
    tracing::info!(%actor, matched, canceled, "operator: bulk cancel");
    Ok(json!({"matched": matched.max(canceled), "canceled": canceled}))
}

/// One batch of a bulk cancel, in its own transaction; answers how many
/// attempts it canceled (fewer than it picked when workers claimed some
/// meanwhile), or `None` when none is left.
async fn cancel_batch(ctx: &Ctx, filter: &BulkFilter, actor: &str, reason: &str) -> Result<Option<i64>, ApiError> {
    let mut tx = ctx.db.begin().await?;
    audit::act_because(&mut tx, actor, "attempt.bulk_cancel", reason).await?;
    let picked = bulk::pick(&mut tx, filter, BULK_BATCH).await?;
    if picked.is_empty() {
        return Ok(None);
    }
    let done = bulk::cancel(&mut tx, &picked, reason, reason).await?;
    let charges: Vec<_> = done.iter().filter(|c| c.kind.is_charge()).map(|c| &c.attempt.payment_id).collect();
    let captures: Vec<_> =
        done.iter().filter(|c| c.kind == TransactionKind::Capture).map(|c| (&c.attempt.payment_id, c.amount)).collect();
    let failed = bulk::fail_payments(&mut tx, &charges, FailureCode::RetryCanceled, reason).await?;
    if !captures.is_empty() {
        bulk::release_captures(&mut tx, &captures).await?;
    }
    let transition = domain::payment::charge_failed(PaymentStatus::Pending)?;
    let scopes: Vec<Scope> = failed.iter().map(|r| Scope::system(r.merchant_id.clone(), r.livemode)).collect();
    // Pending payments have no refunds to read.
    let views: Vec<Payment> = failed.into_iter().map(|r| Payment::new(r, Vec::new())).collect();
    let batch: Vec<_> = scopes.iter().zip(&views).map(|(s, p)| (s, transition.event, p)).collect();
    if !batch.is_empty() {
        events::record_all(&mut tx, &batch).await?;
    }
    tx.commit().await?;
    for p in &views {
        crate::observe::transition(transition.from.as_str(), transition.to.as_str());
        notify::ring_with(&ctx.db, notify::PAYMENT_STATUS, p.row.id.as_str());
    }
    notify::ring(&ctx.db, notify::DELIVERIES);
    Ok(Some(i64::try_from(done.len()).unwrap_or(i64::MAX)))
}
