//! A payment's details and history: metadata and description updates,
//! tags, its transactions and its audit log.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::params::{Fields, METADATA_MAX_KEYS, Query, unknown_cursor};
use super::payments::{DESCRIPTION_MAX, parse_id};
use super::{ApiError, Ctx, IdempotencyKey, Outcome, begin_or_replay, finish, list_body, to_json};
use crate::db::paging::Cursor;
use crate::db::payments as store;
use crate::db::{audit, payment_changes as changes, transactions as txns};
use crate::domain::{PaymentId, Scope, TransactionId, Viewer};

/// Longest tag, in characters.
pub const TAG_MAX: usize = 64;
/// Most tags on one payment.
pub const TAGS_MAX: usize = 50;

/// `POST /v1/payments/{id}`: merges `metadata` (a `null` value removes its
/// key) and replaces `description` (`null` clears it).
pub async fn update(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let clears_description = body.get("description").is_some_and(Value::is_null);
    let mut f = Fields::new(body, &["metadata", "description"])?;
    let patch = f.metadata_patch("metadata")?;
    let description = f.optional_string("description", DESCRIPTION_MAX)?;
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.update");
    let row = store::find(&mut tx, scope, &id, true).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    let mut metadata = match row.metadata.clone() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in patch {
        match v {
            Value::Null => metadata.remove(&k),
            v => metadata.insert(k, v),
        };
    }
    if metadata.len() > METADATA_MAX_KEYS {
        return Err(ApiError::invalid("metadata", format!("metadata may have at most {METADATA_MAX_KEYS} keys")));
    }
    let description = if clears_description { None } else { description.or(row.description.clone()) };
    let row = changes::update_details(&mut tx, &id, &Value::Object(metadata), description.as_deref()).await?;
    let payment = store::view(&mut tx, row).await?;
    finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&payment)? }).await
}

/// `POST /v1/payments/{id}/tags`: adds `tags` (those already there are kept
/// once, in their first place).
pub async fn add_tags(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    body: Value,
    key: Option<&IdempotencyKey>,
) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut f = Fields::new(body, &["tags"])?;
    let new = f.strings("tags")?;
    if let Some(bad) = new.iter().find(|t| t.trim().is_empty() || t.chars().count() > TAG_MAX) {
        return Err(ApiError::invalid("tags", format!("tags must be 1 to {TAG_MAX} characters: {bad:?}")));
    }
    let mut tx = begin_or_replay!(ctx, scope, key, "payment.tag");
    let row = store::find(&mut tx, scope, &id, true).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    let mut tags = row.tags.clone();
    for t in new {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > TAGS_MAX {
        return Err(ApiError::invalid("tags", format!("a payment may have at most {TAGS_MAX} tags")));
    }
    let payment = set_tags(&mut tx, &id, &tags).await?;
    finish(ctx, tx, scope, key, Outcome { status: 200, body: to_json(&payment)? }).await
}

/// `DELETE /v1/payments/{id}/tags/{tag}`: 404 when the payment has no such tag.
pub async fn remove_tag(ctx: &Ctx, scope: &Scope, id: &str, tag: &str) -> Result<Outcome, ApiError> {
    let id = parse_id(id)?;
    let mut tx = begin_or_replay!(ctx, scope, None, "payment.untag");
    let row = store::find(&mut tx, scope, &id, true).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    if !row.tags.iter().any(|t| t == tag) {
        return Err(ApiError::not_found_param(format!("the payment has no tag {tag:?}"), "tag"));
    }
    let tags: Vec<String> = row.tags.into_iter().filter(|t| t != tag).collect();
    let payment = set_tags(&mut tx, &id, &tags).await?;
    finish(ctx, tx, scope, None, Outcome { status: 200, body: to_json(&payment)? }).await
}

async fn set_tags(conn: &mut sqlx::PgConnection, id: &PaymentId, tags: &[String]) -> Result<store::Payment, ApiError> {
    let row = changes::set_tags(&mut *conn, id, tags).await?;
    Ok(store::view(conn, row).await?)
}

/// The payment `viewer` asks about, or 404.
async fn visible(ctx: &Ctx, viewer: &Viewer, id: &str) -> Result<PaymentId, ApiError> {
    let id = parse_id(id)?;
    let mut conn = ctx.db.acquire().await?;
    store::find_visible(&mut conn, viewer, &id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    Ok(id)
}

/// `GET /v1/payments/{id}/transactions`, newest first.
pub async fn transactions(
    ctx: &Ctx,
    viewer: &Viewer,
    id: &str,
    query: HashMap<String, String>,
) -> Result<Value, ApiError> {
    let mut q = Query::list(query, &[])?;
    let (limit, cursor) = (q.limit()?, q.cursor(TransactionId::parse, "a transaction id (txn_…)")?);
    let id = visible(ctx, viewer, id).await?;
    let (rows, more, total) =
        txns::list(&ctx.db, &id, limit, &cursor).await?.ok_or_else(|| unknown_cursor(&cursor, "transaction"))?;
    list_body(&rows, more, total)
}

/// `GET /v1/payments/{id}/audit_log`, oldest first.
pub async fn audit_log(
    ctx: &Ctx,
    viewer: &Viewer,
    id: &str,
    query: HashMap<String, String>,
) -> Result<Value, ApiError> {
    let mut q = Query::list(query, &[])?;
    let ordinal = |s: &str| s.strip_prefix("aud_")?.parse::<i64>().ok().filter(|n| *n >= 1);
    let (limit, cursor) = (q.limit()?, q.cursor(ordinal, "an audit entry id (aud_…)")?);
    let id = visible(ctx, viewer, id).await?;
    // Entries are numbered in an append-only log: a cursor is an offset.
    let (offset, limit) = match cursor {
        Cursor::Offset(o) => (o, limit),
        Cursor::StartingAfter(n) => (n, limit),
        Cursor::EndingBefore(n) => ((n - 1 - limit).max(0), limit.min(n - 1)),
    };
    let (rows, total) = audit::list(&ctx.db, &id, limit, offset).await?;
    if cursor.id().is_some_and(|n| *n > total) {
        return Err(unknown_cursor(&cursor, "audit entry"));
    }
    let more = match cursor {
        Cursor::EndingBefore(_) => offset > 0,
        _ => offset + (rows.len() as i64) < total,
    };
    list_body(&rows, more, total)
}
