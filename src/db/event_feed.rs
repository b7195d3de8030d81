//! The events list as a catch-up feed (contract §13): a time range,
//! several types, `delivery_success`, and cursor paging that is stable while
//! new events arrive (a cursor is an event; pages are cut by
//! `(created_at, id)`, the order of the `events_list` index).

use sqlx::PgPool;
use time::OffsetDateTime;

use super::events::Event;
use super::paging::{self, BY_TENANT, Cursor, Keyset, Page};
use crate::domain::{EventId, EventType, PaymentId, Scope};

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
    pub cursor: Cursor<EventId>,
}

const FILTER: &str = "e.merchant_id = $1 AND e.livemode = $2 AND ($3::text[] IS NULL OR e.type = ANY($3))
    AND ($4::text IS NULL OR e.payment_id = $4) AND ($5::timestamptz IS NULL OR e.created_at >= $5)
    AND ($6::timestamptz IS NULL OR e.created_at < $6)
    AND ($7::bool IS NULL OR $7 = NOT EXISTS (
        SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status <> 'succeeded'))";

/// The events list's order (the `events_list` index).
const EVENTS: Keyset = Keyset { table: "events", alias: "e", key: &["created_at", "id"], owner: BY_TENANT };

/// A page of events (newest first), whether more follow in the direction
/// of the page, and the total matching the filters; `None` when the cursor
/// is not an event of this tenant.
pub async fn page(pool: &PgPool, scope: &Scope, f: &EventFilter) -> Result<Page<Event>, sqlx::Error> {
    let mut tx = super::snapshot(pool).await?;
    if !EVENTS.admits(&mut tx, &f.cursor, Some(scope.merchant_id.as_str()), Some(scope.livemode)).await? {
        return Ok(None);
    }
    let types: Option<Vec<&str>> = f.types.as_ref().map(|t| t.iter().map(|k| k.as_str()).collect());
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(&scope.merchant_id)
                .bind(scope.livemode)
                .bind(&types)
                .bind(&f.payment)
                .bind(f.created_gte)
                .bind(f.created_lt)
                .bind(f.delivery_success)
        };
    }
    let rows: Vec<Event> = paging::bind(
        bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT e.id, 'event' AS object, e.type, e.created_at, e.livemode, e.data, e.expunged FROM events e
             WHERE {FILTER} {}",
            EVENTS.tail(&f.cursor, 8)
        )))),
        &f.cursor,
        f.limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (rows, more) = paging::finish(rows, &f.cursor, f.limit);
    let total =
        bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM events e WHERE {FILTER}"))))
            .fetch_one(&mut *tx)
            .await?;
    Ok(Some((rows, more, total)))
}
