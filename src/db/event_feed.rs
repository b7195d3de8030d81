//! The events list as a catch-up feed (contract §13): a time range,
//! several types, `delivery_success`, and cursor paging that is stable while
//! new events arrive (a cursor is an event; pages are cut by
//! `(created_at, id)`, the order of the `events_list` index).

use sqlx::PgPool;
use time::OffsetDateTime;

use super::events::Event;
use crate::domain::{EventId, EventType, PaymentId, Scope};

/// Where a page starts.
#[derive(Clone, Debug)]
pub enum Cursor {
    /// Skip this many (the default: 0).
    Offset(i64),
    /// The events older than this one.
    StartingAfter(EventId),
    /// The events newer than this one (still answered newest first).
    EndingBefore(EventId),
}

/// Filters of `GET /v1/events`.
#[derive(Clone, Debug)]
pub struct EventFilter {
    pub types: Option<Vec<EventType>>,
    pub payment: Option<PaymentId>,
    pub created_gte: Option<OffsetDateTime>,
    pub created_lt: Option<OffsetDateTime>,
    /// `Some(false)`: events with a failed or pending delivery; `Some(true)`:
    /// events all of whose deliveries succeeded.
    pub delivery_success: Option<bool>,
    pub limit: i64,
    pub cursor: Cursor,
}

const FILTER: &str = "e.merchant_id = $1 AND e.livemode = $2 AND ($3::text[] IS NULL OR e.type = ANY($3))
    AND ($4::text IS NULL OR e.payment_id = $4) AND ($5::timestamptz IS NULL OR e.created_at >= $5)
    AND ($6::timestamptz IS NULL OR e.created_at < $6)
    AND ($7::bool IS NULL OR $7 = NOT EXISTS (
        SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status <> 'succeeded'))";

/// A page of events (newest first), whether more follow in the direction
/// of the page, and the total matching the filters; `None` when the cursor
/// is not an event of this tenant.
pub async fn page(
    pool: &PgPool,
    scope: &Scope,
    f: &EventFilter,
) -> Result<Option<(Vec<Event>, bool, i64)>, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    let (cursor_id, after) = match &f.cursor {
        Cursor::Offset(_) => (None, true),
        Cursor::StartingAfter(id) => (Some(id), true),
        Cursor::EndingBefore(id) => (Some(id), false),
    };
    let at: Option<OffsetDateTime> = match cursor_id {
        Some(id) => {
            let found = sqlx::query_scalar(
                "SELECT created_at FROM events WHERE id = $1 AND merchant_id = $2 AND livemode = $3",
            )
            .bind(id)
            .bind(&scope.merchant_id)
            .bind(scope.livemode)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(at) = found else { return Ok(None) };
            Some(at)
        }
        None => None,
    };
    let offset = match f.cursor {
        Cursor::Offset(n) => n,
        _ => 0,
    };
    let (cut, order) = if after { ("<", "DESC") } else { (">", "ASC") };
    let types: Option<Vec<&str>> = f.types.as_ref().map(|t| t.iter().map(|k| k.as_str()).collect());
    let mut rows: Vec<Event> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT e.id, 'event' AS object, e.type, e.created_at, e.livemode, e.data, e.expunged FROM events e
         WHERE {FILTER} AND ($8::timestamptz IS NULL OR (e.created_at, e.id) {cut} ($8, $9))
         ORDER BY e.created_at {order}, e.id {order} LIMIT $10 OFFSET $11"
    )))
    .bind(&scope.merchant_id)
    .bind(scope.livemode)
    .bind(&types)
    .bind(&f.payment)
    .bind(f.created_gte)
    .bind(f.created_lt)
    .bind(f.delivery_success)
    .bind(at)
    .bind(cursor_id)
    .bind(f.limit + 1)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let more = rows.len() as i64 > f.limit;
    rows.truncate(usize::try_from(f.limit).unwrap_or(0));
    if !after {
        rows.reverse();
    }
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM events e WHERE {FILTER}")))
        .bind(&scope.merchant_id)
        .bind(scope.livemode)
        .bind(&types)
        .bind(&f.payment)
        .bind(f.created_gte)
        .bind(f.created_lt)
        .bind(f.delivery_success)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((rows, more, total)))
}
