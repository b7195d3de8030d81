//! Payments: the row, the payment object as the contract shows it, and
//! the statements that find, lock and list payments. Statements that change
//! a payment are in [`super::payment_changes`]; refunds in [`super::refunds`].

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::paging::{self, BY_TENANT, Cursor, Keyset, Page};
use super::refunds::{self, Refund};
use crate::domain::{
    Amount, Balances, Currency, FailureCode, MerchantId, MethodKind, PaymentId, PaymentStatus, Scope, Viewer,
};
use crate::timefmt;

/// A payments row; serialized, it is the payment object's fields.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PaymentRow {
    pub id: PaymentId,
    pub number: i64,
    /// 1 at creation, +1 at every change (contract §13): a receiver keeps
    /// the highest it has seen.
    pub sequence: i64,
    #[serde(skip)]
    pub merchant_id: MerchantId,
    pub livemode: bool,
    pub amount: Amount,
    pub currency: Currency,
    pub capture: bool,
    pub amount_capturable: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub status: PaymentStatus,
    pub payment_method_id: String,
    pub provider: String,
    pub method: MethodKind,
    pub description: Option<String>,
    pub reference: Option<String>,
    pub external_key: Option<String>,
    pub customer_id: Option<String>,
    pub metadata: Value,
    pub tags: Vec<String>,
    pub fee: i64,
    pub provider_reference: Option<String>,
    pub error_code: Option<FailureCode>,
    pub failure_message: Option<String>,
    pub attempt_count: i32,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "timefmt::ser")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser")]
    pub updated_at: OffsetDateTime,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub processed_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "timefmt::ser_opt")]
    pub canceled_at: Option<OffsetDateTime>,
    pub cancellation_reason: Option<String>,
    /// With `requires_action`: what the customer must do (contract §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<Value>,
}

impl PaymentRow {
    /// The money on the payment, with refunds still pending.
    pub fn balances(&self, refund_pending: i64) -> Balances {
        Balances {
            amount: self.amount,
            captured: self.amount_captured,
            refunded: self.amount_refunded,
            refund_pending,
            capturable: self.amount_capturable,
        }
    }
}

/// `{"href": …}`
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Link {
    pub href: String,
}

/// `_links` of a payment.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentLinks {
    #[serde(rename = "self")]
    pub self_: Link,
}

/// The payment object (contract §4).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Payment {
    /// Always `payment`.
    pub object: &'static str,
    #[serde(flatten)]
    pub row: PaymentRow,
    pub refunds: Vec<Refund>,
    pub _links: PaymentLinks,
}

impl Payment {
    /// Builds the object from its row and refunds.
    pub fn new(row: PaymentRow, refunds: Vec<Refund>) -> Self {
        let _links = PaymentLinks { self_: Link { href: format!("/v1/payments/{}", row.id) } };
        Self { object: "payment", row, refunds, _links }
    }
}

/// What a new payment is made of (already parsed and checked).
#[derive(Clone, Debug)]
pub struct NewPayment {
    pub id: PaymentId,
    pub scope: Scope,
    pub amount: Amount,
    pub currency: Currency,
    pub capture: bool,
    pub payment_method_id: String,
    pub provider: String,
    pub method: MethodKind,
    pub description: Option<String>,
    pub reference: Option<String>,
    pub external_key: Option<String>,
    pub customer_id: Option<String>,
    pub metadata: Value,
}

/// The pending payment holding `reference`, if any.
pub async fn pending_with_reference(
    conn: &mut PgConnection,
    scope: &Scope,
    reference: &str,
) -> Result<Option<PaymentId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM payments WHERE merchant_id = $1 AND reference = $2 AND status = 'pending'")
        .bind(&scope.merchant_id)
        .bind(reference)
        .fetch_optional(conn)
        .await
}

/// A payment of this tenant; `lock` takes the row lock for a state change.
pub async fn find(
    conn: &mut PgConnection,
    scope: &Scope,
    id: &PaymentId,
    lock: bool,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = if lock {
        "SELECT * FROM payments WHERE id = $1 AND merchant_id = $2 AND livemode = $3 FOR UPDATE"
    } else {
        "SELECT * FROM payments WHERE id = $1 AND merchant_id = $2 AND livemode = $3"
    };
    sqlx::query_as(sql).bind(id).bind(&scope.merchant_id).bind(scope.livemode).fetch_optional(conn).await
}

/// A payment `viewer` may read.
pub async fn find_visible(
    conn: &mut PgConnection,
    viewer: &Viewer,
    id: &PaymentId,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    let (merchant, livemode) = viewer.bounds();
    sqlx::query_as(
        "SELECT * FROM payments WHERE id = $1 AND ($2::text IS NULL OR merchant_id = $2)
             AND ($3::boolean IS NULL OR livemode = $3)",
    )
    .bind(id)
    .bind(merchant)
    .bind(livemode)
    .fetch_optional(conn)
    .await
}

/// A payment by id alone, locked, naming the actor and action of the
/// changes that follow for the audit log (one round trip for both).
pub async fn lock_for_change(
    conn: &mut PgConnection,
    id: &PaymentId,
    actor: &str,
    action: &str,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    Ok(lock_all_for_change(conn, &[id], actor, action).await?.pop())
}

/// [`lock_for_change`] for several payments at once, locked in id order
/// (so two batches never wait on each other in a cycle). Unknown ids are
/// left out of the answer.
pub async fn lock_all_for_change(
    conn: &mut PgConnection,
    ids: &[&PaymentId],
    actor: &str,
    action: &str,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    sqlx::query_as(
        "SELECT p.*, set_config('payd.actor', $2, true) AS _actor, set_config('payd.action', $3, true) AS _action
         FROM payments p WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .bind(actor)
    .bind(action)
    .fetch_all(conn)
    .await
}

/// A payment by id alone, locked (workers act for every tenant).
pub async fn lock_by_id(conn: &mut PgConnection, id: &PaymentId) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM payments WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(conn).await
}

/// The payment object from its row.
pub async fn view(conn: &mut PgConnection, row: PaymentRow) -> Result<Payment, sqlx::Error> {
    let refunds = refunds::of_payment(conn, &row.id).await?;
    Ok(Payment::new(row, refunds))
}

/// Filters of `GET /v1/payments`.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<PaymentStatus>,
    pub created_after: Option<OffsetDateTime>,
    pub created_before: Option<OffsetDateTime>,
    pub external_key: Option<String>,
    pub reference: Option<String>,
    pub customer_id: Option<String>,
    /// Operators only: one merchant.
    pub merchant_id: Option<MerchantId>,
    /// `GET /v1/payments/search`: the id, or a substring of external_key,
    /// reference, customer_id or description (case-insensitive).
    pub search: Option<String>,
    pub limit: i64,
    pub cursor: Cursor<PaymentId>,
}

/// The payments list's order (`payments_list`); an operator's cursor may
/// be any payment.
const PAYMENTS: Keyset = Keyset { table: "payments", alias: "payments", key: &["created_at", "id"], owner: BY_TENANT };

/// `%text%` for ILIKE, with the pattern characters in `text` escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A page of payment rows `viewer` may read, newest first, whether more
/// follow and the total matching; `None` when the cursor is not one of them.
pub async fn list(pool: &PgPool, viewer: &Viewer, f: &ListFilter) -> Result<Page<PaymentRow>, sqlx::Error> {
    // One statement with optional filters keeps the SQL static; the planner
    // folds the `$n IS NULL` branches for each execution.
    const FILTER: &str = "($1::text IS NULL OR merchant_id = $1) AND ($2::boolean IS NULL OR livemode = $2)
        AND ($3::text IS NULL OR status = $3)
        AND ($4::timestamptz IS NULL OR created_at > $4)
        AND ($5::timestamptz IS NULL OR created_at < $5)
        AND ($6::text IS NULL OR external_key = $6)
        AND ($7::text IS NULL OR reference = $7)
        AND ($8::text IS NULL OR customer_id = $8)
        AND ($9::text IS NULL OR merchant_id = $9)
        AND ($10::text IS NULL OR id = $10 OR external_key ILIKE $11 OR reference ILIKE $11
             OR customer_id ILIKE $11 OR description ILIKE $11)";
    let (merchant, livemode) = viewer.bounds();
    let pattern = f.search.as_deref().map(contains_pattern);
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(merchant)
                .bind(livemode)
                .bind(f.status)
                .bind(f.created_after)
                .bind(f.created_before)
                .bind(&f.external_key)
                .bind(&f.reference)
                .bind(&f.customer_id)
                .bind(&f.merchant_id)
                .bind(&f.search)
                .bind(&pattern)
        };
    }
    let mut tx = super::snapshot(pool).await?;
    if !PAYMENTS.admits(&mut tx, &f.cursor, merchant.map(MerchantId::as_str), livemode).await? {
        return Ok(None);
    }
    let sql = format!("SELECT * FROM payments WHERE {FILTER} {}", PAYMENTS.tail(&f.cursor, 12));
    let rows: Vec<PaymentRow> =
        paging::bind(bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(sql))), &f.cursor, f.limit)
            .fetch_all(&mut *tx)
            .await?;
    let (rows, more) = paging::finish(rows, &f.cursor, f.limit);
    let total: i64 =
        bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM payments WHERE {FILTER}"))))
            .fetch_one(&mut *tx)
            .await?;
    Ok(Some((rows, more, total)))
}
