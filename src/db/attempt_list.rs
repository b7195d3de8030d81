//! The attempt object as merchants and operators read it: one attempt,
//! and the attempts list with its filters and cursor.

use sqlx::PgConnection;

use super::paging::{self, Cursor, Keyset, Page};
use crate::domain::{AttemptId, AttemptStatus, FailureCode, MerchantId, PaymentId, TransactionId, Viewer};

/// The attempt object (contract §4).
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Attempt {
    pub object: String,
    pub id: AttemptId,
    pub payment_id: PaymentId,
    pub transaction_id: TransactionId,
    pub number: i32,
    pub status: AttemptStatus,
    #[serde(serialize_with = "crate::timefmt::ser")]
    pub scheduled_at: time::OffsetDateTime,
    #[serde(serialize_with = "crate::timefmt::ser_opt")]
    pub started_at: Option<time::OffsetDateTime>,
    #[serde(serialize_with = "crate::timefmt::ser_opt")]
    pub finished_at: Option<time::OffsetDateTime>,
    pub error_code: Option<FailureCode>,
}

pub(crate) const ATTEMPT_COLUMNS: &str =
    "'attempt' AS object, a.id, a.payment_id, a.transaction_id, a.number, a.status,
    a.scheduled_at, a.started_at, a.finished_at, a.error_code";

/// Filters of `GET /v1/attempts`.
#[derive(Clone, Debug, Default)]
pub struct AttemptFilter {
    pub status: Option<AttemptStatus>,
    pub payment_id: Option<PaymentId>,
    pub merchant_id: Option<MerchantId>,
    pub limit: i64,
    pub cursor: Cursor<AttemptId>,
}

/// The attempts lists' order; a cursor is an attempt `viewer` may read.
const ATTEMPTS: Keyset = Keyset {
    table: "attempts",
    alias: "a",
    key: &["created_at", "id"],
    owner: "JOIN payments p ON p.id = k.payment_id
        WHERE ($2::text IS NULL OR p.merchant_id = $2) AND ($3::boolean IS NULL OR p.livemode = $3)",
};

/// Attempts visible to `viewer`, newest first, whether more follow and the
/// total; `None` when the cursor is not one of them.
pub async fn list(pool: &sqlx::PgPool, viewer: &Viewer, f: &AttemptFilter) -> Result<Page<Attempt>, sqlx::Error> {
    const FILTER: &str = "($1::text IS NULL OR p.merchant_id = $1) AND ($2::boolean IS NULL OR p.livemode = $2)
        AND ($3::text IS NULL OR a.status = $3) AND ($4::text IS NULL OR a.payment_id = $4)
        AND ($5::text IS NULL OR p.merchant_id = $5)";
    let (merchant, livemode) = viewer.bounds();
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(merchant).bind(livemode).bind(&f.status).bind(&f.payment_id).bind(&f.merchant_id)
        };
    }
    let mut tx = super::snapshot(pool).await?;
    if !ATTEMPTS.admits(&mut tx, &f.cursor, merchant.map(MerchantId::as_str), livemode).await? {
        return Ok(None);
    }
    let rows = paging::bind(
        bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN payments p ON p.id = a.payment_id WHERE {FILTER} {}",
            ATTEMPTS.tail(&f.cursor, 6)
        )))),
        &f.cursor,
        f.limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let (rows, more) = paging::finish(rows, &f.cursor, f.limit);
    let total = bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM attempts a JOIN payments p ON p.id = a.payment_id WHERE {FILTER}"
    ))))
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some((rows, more, total)))
}

/// One attempt visible to `viewer`, with its payment's id.
pub async fn find(conn: &mut PgConnection, viewer: &Viewer, id: &AttemptId) -> Result<Option<Attempt>, sqlx::Error> {
    let (merchant, livemode) = viewer.bounds();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN payments p ON p.id = a.payment_id
         WHERE a.id = $1 AND ($2::text IS NULL OR p.merchant_id = $2) AND ($3::boolean IS NULL OR p.livemode = $3)"
    )))
    .bind(id)
    .bind(merchant)
    .bind(livemode)
    .fetch_optional(conn)
    .await
}
