//! Holds (contract §14): an operator parks the scheduled attempts of a
//! provider (or merchant, or error code) during an outage, and releases
//! them afterwards spread over a window. Holds act on the whole deployment,
//! so they are for operator keys only: a merchant key gets 403 (a merchant
//! stops its own retries with a cancel).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::params::{Fields, Query};
use super::payments::REASON_MAX;
use super::{ApiError, Ctx, list_body, to_json};
use crate::db::holds::{self, HoldFilter};
use crate::domain::{FailureCode, HoldId, HoldStatus, MerchantId, Viewer};

/// Attempts parked per transaction when a hold is created.
const PARK_BATCH: i64 = 1000;
/// The default window of a release (`over`).
pub const RELEASE_OVER: Duration = Duration::from_secs(600);
/// The longest window of a release.
const RELEASE_OVER_MAX: Duration = Duration::from_secs(24 * 3600);

/// Holds are the deployment's: operators only.
pub fn operator_only(viewer: &Viewer, what: &str) -> Result<(), ApiError> {
    match viewer {
        Viewer::Operator => Ok(()),
        Viewer::Merchant(_) => Err(ApiError::forbidden(format!("{what} are for operator keys"))),
    }
}

fn parse_hold_id(raw: &str) -> Result<HoldId, ApiError> {
    HoldId::parse(raw).ok_or_else(|| ApiError::not_found("hold"))
}

/// `POST /v1/holds` (and `payd holds create`): answers 201 with the hold
/// and `matched`, the scheduled attempts it parked. From its commit on,
/// every matching attempt that comes due is parked by the worker's claim.
pub async fn create(ctx: &Ctx, viewer: &Viewer, actor: &str, body: Value) -> Result<Value, ApiError> {
    operator_only(viewer, "holds")?;
    let mut f = Fields::new(body, &["provider", "merchant_id", "error_code", "reason"])?;
    let provider = f.optional_string("provider", 64)?;
    let merchant_id = f
        .optional_string("merchant_id", 64)?
        .map(|m| {
            MerchantId::parse(&m)
                .ok_or_else(|| ApiError::invalid("merchant_id", "merchant_id must be a merchant id (mer_…)"))
        })
        .transpose()?;
    let error_code = f.optional_string("error_code", 64)?;
    if let Some(code) = &error_code
        && FailureCode::parse(code).is_none()
    {
        return Err(ApiError::invalid("error_code", format!("unknown error code {code}")));
    }
    let reason = f.string("reason", REASON_MAX)?;
    if let Some(m) = &merchant_id
        && !crate::db::keys::merchant_exists(&ctx.db, m).await?
    {
        return Err(ApiError::not_found_param(format!("no such merchant {m}"), "merchant_id"));
    }
    let filter = HoldFilter { provider, merchant_id, error_code };
    let mut tx = ctx.db.begin().await?;
    let id = holds::insert(&mut tx, &filter, &reason, actor).await?;
    tx.commit().await?;
    // Parked in batches after the hold's commit: meanwhile the claims
    // already respect it, so nothing slips through between batches.
    let mut matched = 0;
    loop {
        let mut tx = ctx.db.begin().await?;
        let n = holds::park_batch(&mut tx, &id, PARK_BATCH).await?;
        tx.commit().await?;
        matched += n;
        if n < PARK_BATCH as u64 {
            break;
        }
    }
    let mut conn = ctx.db.acquire().await?;
    holds::set_matched(&mut conn, &id, matched).await?;
    tracing::warn!(hold_id = %id, %actor, matched, %reason, "operator: hold created");
    let hold = holds::find(&mut conn, &id).await?.ok_or_else(|| ApiError::not_found("hold"))?;
    to_json(&hold)
}

/// `POST /v1/holds/{id}/release` (`over`, default `10m`; and `payd holds
/// release`): the hold ends, and its attempts are scheduled again, due
/// evenly over `over` from now. Releasing a released hold answers it as it
/// is (idempotent).
pub async fn release(ctx: &Ctx, viewer: &Viewer, actor: &str, id: &str, body: Value) -> Result<Value, ApiError> {
    operator_only(viewer, "holds")?;
    let id = parse_hold_id(id)?;
    let mut f = Fields::new(body, &["over"])?;
    let over = match f.optional_string("over", 32)? {
        None => RELEASE_OVER,
        Some(raw) => crate::config::parse_duration(&raw)
            .ok()
            .filter(|d| *d <= RELEASE_OVER_MAX)
            .ok_or_else(|| ApiError::invalid("over", "over must be a duration such as 30s, 10m or 2h, at most 24h"))?,
    };
    let mut tx = ctx.db.begin().await?;
    crate::db::audit::act(&mut tx, actor, "hold.release").await?;
    holds::find(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("hold"))?;
    if holds::release(&mut tx, &id, actor, over).await? {
        // Lock order everywhere: payment, then attempt.
        holds::lock_payments(&mut tx, &id).await?;
        let n = holds::unpark(&mut tx, &id, over).await?;
        tracing::warn!(hold_id = %id, %actor, released = n, ?over, "operator: hold released");
    }
    let hold = holds::find(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found("hold"))?;
    tx.commit().await?;
    to_json(&hold)
}

/// `GET /v1/holds` (`status`, `limit`, `offset`; and `payd holds list`).
pub async fn list(ctx: &Ctx, viewer: &Viewer, query: HashMap<String, String>) -> Result<Value, ApiError> {
    operator_only(viewer, "holds")?;
    let mut q = Query::new(query, &["status", "limit", "offset"])?;
    let status = q.parsed("status", HoldStatus::parse, HoldStatus::names)?;
    let (limit, offset) = (q.limit()?, q.offset()?);
    let (rows, total) = holds::list(&ctx.db, status, limit, offset).await?;
    // A short work list: offset paging only.
    let has_more = offset + i64::try_from(rows.len()).unwrap_or(i64::MAX) < total;
    list_body(&rows, has_more, total)
}
