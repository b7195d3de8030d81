//! Attempts: one row per provider call, claimed before the call and finished
//! in the transaction that records the outcome.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{AttemptId, AttemptStatus, Currency, FailureCode, PaymentId, TransactionId, TransactionKind};

/// An attempt a worker has claimed.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    pub id: AttemptId,
    pub payment_id: PaymentId,
    pub transaction_id: TransactionId,
    pub number: i32,
    /// Proves this claim is still the current one when the outcome is written.
    pub claim_token: Uuid,
    /// An inquiry: it asks the provider what became of the earlier calls.
    pub inquiry: bool,
}

/// Inserts attempt `number`, due after `delay` and not enqueued yet (the
/// scheduler enqueues it when due); answers when it is due.
pub async fn insert_later(
    conn: &mut PgConnection,
    payment: &PaymentId,
    transaction: &TransactionId,
    number: i32,
    delay: Duration,
) -> Result<time::OffsetDateTime, sqlx::Error> {
    insert_scheduled(conn, payment, transaction, number, delay, false).await
}

/// Inserts inquiry `number` (an attempt that asks the provider about the
/// transaction's earlier calls instead of calling again), due after `delay`.
pub async fn insert_inquiry(
    conn: &mut PgConnection,
    payment: &PaymentId,
    transaction: &TransactionId,
    number: i32,
    delay: Duration,
) -> Result<(), sqlx::Error> {
    insert_scheduled(conn, payment, transaction, number, delay, true).await.map(|_| ())
}

async fn insert_scheduled(
    conn: &mut PgConnection,
    payment: &PaymentId,
    transaction: &TransactionId,
    number: i32,
    delay: Duration,
    inquiry: bool,
) -> Result<time::OffsetDateTime, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO attempts (id, payment_id, transaction_id, number, status, scheduled_at, inquiry)
         VALUES ($1, $2, $3, $4, 'scheduled', now() + make_interval(secs => $5), $6)
         RETURNING scheduled_at",
    )
    .bind(AttemptId::generate())
    .bind(payment)
    .bind(transaction)
    .bind(number)
    .bind(delay.as_secs_f64())
    .bind(inquiry)
    .fetch_one(conn)
    .await
}

/// How many inquiries the transaction has had (run or scheduled).
pub async fn inquiries(conn: &mut PgConnection, transaction: &TransactionId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM attempts WHERE transaction_id = $1 AND inquiry")
        .bind(transaction)
        .fetch_one(conn)
        .await
}

/// A claimed attempt with what its provider call needs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedCall {
    #[sqlx(flatten)]
    pub claimed: Claimed,
    /// The transaction's type, amount and currency.
    pub kind: TransactionKind,
    pub amount: i64,
    pub currency: Currency,
    /// The payment's provider and payment method.
    pub provider: String,
    pub payment_method_id: String,
    /// The stored payment method (none for a built-in sandbox one).
    #[sqlx(flatten)]
    pub method: MethodColumns,
}

/// What a call uses of a stored payment method, read with the claim: all
/// `None` when the payment's method is not a stored one.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MethodColumns {
    pub method_token: Option<String>,
    pub method_expires_at: Option<String>,
    pub method_account: Option<crate::domain::ProviderAccountId>,
    pub method_customer: Option<String>,
}

/// Claims due scheduled attempts for `lease`, each with the fresh claim
/// token its caller chose, answering in the same round trip the transaction
/// and payment fields (and the stored payment method) the provider calls
/// need. An attempt an active hold matches is parked (`scheduled` →
/// `held`) by the same statement instead: the guard decides, so a hold and
/// a claim racing for one attempt have exactly one winner. An attempt
/// missing from the answer, or answered with another caller's token (the
/// same attempt asked twice), is not this caller's: it is running
/// elsewhere, finished, canceled, held, not due yet, or unknown — in every
/// case the message that asked for it has nothing left to do.
pub async fn claim_calls(
    conn: &mut PgConnection,
    claims: &[(&AttemptId, Uuid)],
    lease: Duration,
) -> Result<Vec<ClaimedCall>, sqlx::Error> {
    let ids: Vec<&str> = claims.iter().map(|(id, _)| id.as_str()).collect();
    let tokens: Vec<Uuid> = claims.iter().map(|(_, token)| *token).collect();
    sqlx::query_as(concat!(
        "WITH park AS (
             SELECT a.id, (SELECT h.id FROM holds h WHERE h.status = 'active' AND ",
        super::holds::hold_matches!(),
        " ORDER BY h.created_at LIMIT 1) AS hold_id
             FROM attempts a JOIN payments p ON p.id = a.payment_id WHERE a.id = ANY($1) AND a.status = 'scheduled'),
         held AS (
             UPDATE attempts a SET status = 'held', hold_id = park.hold_id, enqueued_at = NULL FROM park
             WHERE a.id = ANY($1) AND a.id = park.id AND park.hold_id IS NOT NULL AND a.status = 'scheduled'
               AND a.scheduled_at <= now() RETURNING a.id),
         c AS (
             UPDATE attempts a SET status = 'running', started_at = now(), claim_token = i.token,
                 lease_until = now() + make_interval(secs => $3)
             FROM unnest($1::text[], $2::uuid[]) AS i(id, token)
             WHERE a.id = ANY($1) AND a.id = i.id AND a.status = 'scheduled' AND a.scheduled_at <= now()
               AND NOT EXISTS (SELECT 1 FROM park WHERE park.id = a.id AND park.hold_id IS NOT NULL)
             RETURNING a.id, a.payment_id, a.transaction_id, a.number, a.claim_token, a.inquiry)
         SELECT c.*, t.type AS kind, t.amount, t.currency, p.provider, p.payment_method_id,
             m.token AS method_token, m.expires_at AS method_expires_at,
             m.provider_account_id AS method_account, m.customer_id AS method_customer
         FROM c JOIN transactions t ON t.id = c.transaction_id JOIN payments p ON p.id = c.payment_id
             LEFT JOIN payment_methods m ON m.id = p.payment_method_id",
    ))
    .bind(ids)
    .bind(tokens)
    .bind(lease.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// `running` → `status`: records the outcome of a claimed attempt; false
/// when the claim was lost (its lease ran out and the attempt was handed to
/// another worker).
pub async fn finish(
    conn: &mut PgConnection,
    claimed: &Claimed,
    status: AttemptStatus,
    error_code: Option<FailureCode>,
) -> Result<bool, sqlx::Error> {
    Ok(!finish_all(conn, &[(claimed, status, error_code)]).await?.is_empty())
}

/// [`finish`] for several claimed attempts at once, with their status and
/// error code; answers the ids whose claim was still current (the others
/// were handed to another worker and are left as they are).
pub async fn finish_all(
    conn: &mut PgConnection,
    done: &[(&Claimed, AttemptStatus, Option<FailureCode>)],
) -> Result<Vec<AttemptId>, sqlx::Error> {
    let ids: Vec<&str> = done.iter().map(|(c, _, _)| c.id.as_str()).collect();
    let tokens: Vec<Uuid> = done.iter().map(|(c, _, _)| c.claim_token).collect();
    let statuses: Vec<&str> = done.iter().map(|(_, s, _)| s.as_str()).collect();
    let codes: Vec<Option<&str>> = done.iter().map(|(_, _, code)| code.map(FailureCode::as_str)).collect();
    sqlx::query_scalar(
        "UPDATE attempts a SET status = i.status, finished_at = now(), error_code = i.code, lease_until = NULL
         FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[]) AS i(id, token, status, code)
         WHERE a.id = ANY($1) AND a.id = i.id AND a.status = 'running' AND a.claim_token = i.token
         RETURNING a.id",
    )
    .bind(ids)
    .bind(tokens)
    .bind(statuses)
    .bind(codes)
    .fetch_all(conn)
    .await
}

/// Keeps a claimed attempt running while the provider's outcome is pending:
/// its lease becomes `wait`. False when the claim was lost meanwhile (e.g. the
/// notification already arrived and finished it).
pub async fn hold_pending(conn: &mut PgConnection, claimed: &Claimed, wait: Duration) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE attempts SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND status = 'running' AND claim_token = $2",
    )
    .bind(&claimed.id)
    .bind(claimed.claim_token)
    .bind(wait.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a "pending" answer of a running attempt; answers how many it has
/// had, or `None` when the claim was lost.
pub async fn count_pending(conn: &mut PgConnection, claimed: &Claimed) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE attempts SET pending_answers = pending_answers + 1
         WHERE id = $1 AND status = 'running' AND claim_token = $2 RETURNING pending_answers",
    )
    .bind(&claimed.id)
    .bind(claimed.claim_token)
    .fetch_optional(conn)
    .await
}

/// The running attempt of a transaction, locked, with its current claim.
pub async fn running_for(conn: &mut PgConnection, transaction: &TransactionId) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, payment_id, transaction_id, number, claim_token, inquiry FROM attempts
         WHERE transaction_id = $1 AND status = 'running' AND claim_token IS NOT NULL FOR UPDATE",
    )
    .bind(transaction)
    .fetch_optional(conn)
    .await
}

/// `scheduled` or `held` → `canceled`: cancels the attempts of a
/// transaction that wait to run (its payment was canceled, or settled); a
/// held one too, or its hold's release would run it. Answers how many.
pub async fn cancel_scheduled(conn: &mut PgConnection, transaction: &TransactionId) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE attempts SET status = 'canceled', finished_at = now(), error_code = 'canceled'
         WHERE transaction_id = $1 AND status IN ('scheduled', 'held')",
    )
    .bind(transaction)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// True when a provider call for the transaction is in flight.
pub async fn running_exists(conn: &mut PgConnection, transaction: &TransactionId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM attempts WHERE transaction_id = $1 AND status = 'running')")
        .bind(transaction)
        .fetch_one(conn)
        .await
}

/// Hands running attempts whose lease ran out (their worker died or hung)
/// back to the schedule, due now. The provider call is repeated with the same
/// idempotency key, so the provider answers what it did the first time.
pub async fn release_expired(conn: &mut PgConnection, limit: i64) -> Result<Vec<AttemptId>, sqlx::Error> {
    sqlx::query_scalar(RELEASE_EXPIRED).bind(limit).fetch_all(conn).await
}

/// [`release_expired`]'s statement: `running` → `scheduled` past the lease.
pub(crate) const RELEASE_EXPIRED: &str = "UPDATE attempts SET status = 'scheduled', scheduled_at = now(),
         enqueued_at = now(), claim_token = NULL, lease_until = NULL
     WHERE id IN (SELECT id FROM attempts WHERE status = 'running' AND lease_until < now()
                  ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING id";

/// [`take_due`]'s statement: due attempts marked enqueued (`$1` the
/// seconds after which an enqueued one counts as lost, `$2` the limit).
pub(crate) const TAKE_DUE: &str = "WITH fresh AS (
         SELECT id FROM attempts WHERE status = 'scheduled' AND enqueued_at IS NULL AND scheduled_at <= now()
         ORDER BY scheduled_at LIMIT $2 FOR UPDATE SKIP LOCKED),
     stale AS (
         SELECT id FROM attempts WHERE status = 'scheduled' AND enqueued_at IS NOT NULL
           AND enqueued_at < now() - make_interval(secs => $1)
         ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED)
     UPDATE attempts SET enqueued_at = now()
     WHERE id IN (SELECT id FROM fresh UNION ALL SELECT id FROM stale)
     RETURNING id";

/// Due scheduled attempts that were never enqueued (retries coming due), and
/// enqueued ones whose message has not led to a claim for `requeue_after`
/// (it went missing); marks them enqueued now. Each half uses its own index,
/// so a long backlog costs nothing per pass.
pub async fn take_due(
    conn: &mut PgConnection,
    requeue_after: Duration,
    limit: i64,
) -> Result<Vec<AttemptId>, sqlx::Error> {
    sqlx::query_scalar(TAKE_DUE).bind(requeue_after.as_secs_f64()).bind(limit).fetch_all(conn).await
}

pub(crate) use super::attempt_list::ATTEMPT_COLUMNS;
pub use super::attempt_list::{Attempt, AttemptFilter, find, list};

/// `scheduled` → `canceled`: cancels one attempt if it is still scheduled
/// (its retry was canceled); the claim guard then makes the cancel final (a
/// worker can no longer claim it).
pub async fn cancel_one(
    conn: &mut PgConnection,
    id: &AttemptId,
    reason: Option<&str>,
) -> Result<Option<Attempt>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE attempts a SET status = 'canceled', finished_at = now(), error_code = 'retry_canceled',
             cancellation_reason = $2
         WHERE a.id = $1 AND a.status = 'scheduled' RETURNING {ATTEMPT_COLUMNS}"
    )))
    .bind(id)
    .bind(reason)
    .fetch_optional(conn)
    .await
}

/// The status an attempt is in now.
pub async fn status_of(conn: &mut PgConnection, id: &AttemptId) -> Result<AttemptStatus, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM attempts WHERE id = $1").bind(id).fetch_one(conn).await
}

/// Scheduled attempts that are due now, across the deployment (a gauge).
pub async fn due_count(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM attempts WHERE status = 'scheduled' AND scheduled_at <= now()")
        .fetch_one(pool)
        .await
}
