//! The dispatcher's side of webhook deliveries: claiming due ones (with a
//! lease, within each endpoint's free slots) and recording each send.
//! Endpoints and the merchant-facing delivery log are in [`super::webhooks`].

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::domain::{DeliveryId, DeliveryStatus, EndpointId, EventId, EventType};

/// A delivery the dispatcher has claimed, with what it needs to send it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    /// The attempt number of this send; also the claim's token.
    pub attempts: i32,
    pub endpoint_id: EndpointId,
    pub url: String,
    pub endpoint_enabled: bool,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub event_id: EventId,
    pub event_type: EventType,
    pub event_created_at: OffsetDateTime,
    pub livemode: bool,
    /// The event's `data`, as JSON text: spliced into the body unparsed.
    pub data: String,
    /// The endpoint's throttle, deliveries per second.
    pub rate_limit: Option<i32>,
}

/// The end of both claims: the picked deliveries get a lease and their
/// send counted, and come back with what their send needs.
macro_rules! lease_picked {
    () => {
        "UPDATE webhook_deliveries d SET lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
         FROM pick, webhook_endpoints e, events ev
         WHERE d.id = pick.id AND e.id = d.endpoint_id AND ev.id = d.event_id
         RETURNING d.id, d.attempts, e.id AS endpoint_id, e.url, e.status = 'enabled' AS endpoint_enabled, e.secret,
             CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret,
             ev.id AS event_id, ev.type AS event_type, ev.created_at AS event_created_at, ev.livemode,
             ev.data::text AS data, e.rate_limit"
    };
}

/// The claim: which endpoints have pending deliveries (a skip scan of the
/// per-endpoint index, one probe each), then for each the oldest due ones
/// it has room for, unleased, locked so concurrent claims take others; the
/// oldest `$1` of those get a lease and their send counted. Every step walks
/// `webhook_deliveries_due_by_endpoint` in order, so a claim reads what it
/// takes, however long the backlog (the dispatcher's connections refuse the
/// plans that would read it whole, see [`super::dispatcher_pool`]).
pub(crate) const CLAIM: &str = concat!(
    "WITH RECURSIVE heads AS (
         (SELECT endpoint_id FROM webhook_deliveries WHERE status = 'pending'
          ORDER BY endpoint_id, next_attempt_at LIMIT 1)
         UNION ALL
         SELECT next.endpoint_id FROM heads h CROSS JOIN LATERAL (
             SELECT endpoint_id FROM webhook_deliveries WHERE status = 'pending' AND endpoint_id > h.endpoint_id
             ORDER BY endpoint_id, next_attempt_at LIMIT 1) next),
     room AS (
         SELECT h.endpoint_id, COALESCE(u.free, $3) AS free
         FROM heads h LEFT JOIN unnest($4::text[], $5::int8[]) AS u(endpoint_id, free) ON u.endpoint_id = h.endpoint_id),
     pick AS (
         SELECT c.id, c.next_attempt_at FROM room r CROSS JOIN LATERAL (
             SELECT id, next_attempt_at FROM webhook_deliveries
             WHERE status = 'pending' AND endpoint_id = r.endpoint_id AND next_attempt_at <= now()
               AND (lease_until IS NULL OR lease_until < now())
             ORDER BY next_attempt_at LIMIT r.free FOR UPDATE SKIP LOCKED) c
         ORDER BY c.next_attempt_at LIMIT $1) ",
    lease_picked!()
);

/// The claim of the deliveries of events just committed (`$6`, as their
/// ring named them): by the `(event_id, endpoint_id)` index, within each
/// endpoint's room, no probe of the other endpoints.
const CLAIM_EVENTS: &str = concat!(
    "WITH due AS (
         SELECT id, endpoint_id, next_attempt_at FROM webhook_deliveries
         WHERE event_id = ANY($6) AND status = 'pending' AND next_attempt_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
         FOR UPDATE SKIP LOCKED),
     ranked AS (
         SELECT due.id, due.next_attempt_at, COALESCE(u.free, $3) AS free,
             row_number() OVER (PARTITION BY due.endpoint_id ORDER BY due.next_attempt_at) AS n
         FROM due LEFT JOIN unnest($4::text[], $5::int8[]) AS u(endpoint_id, free) ON u.endpoint_id = due.endpoint_id),
     pick AS (SELECT id FROM ranked WHERE n <= free ORDER BY next_attempt_at LIMIT $1) ",
    lease_picked!()
);

/// Claims up to `limit` due deliveries with a lease of `lease`, so that a
/// dispatcher that dies mid-send leaves them to be sent again once it ends.
/// An endpoint gets at most its `room` (the sends it may start now), or
/// `initial` when `room` does not name it.
pub async fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    lease: std::time::Duration,
    initial: usize,
    room: &[(EndpointId, usize)],
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    claim_query(CLAIM, limit, lease, initial, room).fetch_all(conn).await
}

type ClaimQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, ClaimedDelivery, sqlx::postgres::PgArguments>;

/// A claim statement with its first five parameters: limit, lease, initial
/// room, and each named endpoint's room.
fn claim_query<'q>(
    sql: &'static str,
    limit: i64,
    lease: std::time::Duration,
    initial: usize,
    room: &'q [(EndpointId, usize)],
) -> ClaimQuery<'q> {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let (endpoints, free): (Vec<&EndpointId>, Vec<i64>) = room.iter().map(|(e, n)| (e, count(*n))).unzip();
    sqlx::query_as(sql).bind(limit).bind(lease.as_secs_f64()).bind(count(initial)).bind(endpoints).bind(free)
}

/// [`claim_due`] of the deliveries of `events` only (events just
/// committed): what a ring names is claimed without the general claim's
/// probe of every endpoint with pending deliveries.
pub async fn claim_events(
    conn: &mut PgConnection,
    events: &[EventId],
    limit: i64,
    lease: std::time::Duration,
    initial: usize,
    room: &[(EndpointId, usize)],
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    claim_query(CLAIM_EVENTS, limit, lease, initial, room).bind(events).fetch_all(conn).await
}

/// Gives claimed deliveries back unsent (their endpoint reached its cap in
/// this process): their lease ends, the claim's send not counted.
pub async fn unclaim(pool: &PgPool, claimed: &[ClaimedDelivery]) -> Result<(), sqlx::Error> {
    let ids: Vec<&DeliveryId> = claimed.iter().map(|d| &d.id).collect();
    let attempts: Vec<i32> = claimed.iter().map(|d| d.attempts).collect();
    sqlx::query(
        "UPDATE webhook_deliveries d SET lease_until = NULL, attempts = d.attempts - 1
         FROM unnest($1::text[], $2::int[]) AS c(id, attempts)
         WHERE d.id = c.id AND d.attempts = c.attempts AND d.status = 'pending'",
    )
    .bind(ids)
    .bind(attempts)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives a claimed delivery back unsent, due again after `delay` (its
/// endpoint's throttle is used up): the claim's send not counted.
pub async fn defer(pool: &PgPool, d: &ClaimedDelivery, delay: std::time::Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = NULL, attempts = attempts - 1,
             next_attempt_at = now() + make_interval(secs => $3)
         WHERE id = $1 AND attempts = $2 AND status = 'pending'",
    )
    .bind(&d.id)
    .bind(d.attempts)
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// What one send produced.
#[derive(Clone, Debug)]
pub struct SendResult {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_body: Option<String>,
}

/// What happens to the delivery after a send.
#[derive(Clone, Copy, Debug)]
pub enum Next {
    /// Delivered.
    Succeeded,
    /// Try again after this long.
    RetryIn(std::time::Duration),
    /// Give up.
    Failed,
}

/// Records a send and its consequence; false when the claim was lost
/// (another dispatcher re-claimed the row after the lease ran out).
pub async fn record(
    pool: &PgPool,
    d: &ClaimedDelivery,
    result: &SendResult,
    next: Next,
    disable_endpoint: bool,
    disable_after: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let (status, retry_secs) = match next {
        Next::Succeeded => (DeliveryStatus::Succeeded, None),
        Next::RetryIn(delay) => (DeliveryStatus::Pending, Some(delay.as_secs_f64())),
        Next::Failed => (DeliveryStatus::Failed, None),
    };
    // One statement (one round trip, one commit): the log row, the delivery,
    // and the endpoint's health — a success ends a failure streak; a streak
    // longer than `disable_after` (or a 410) disables the endpoint. The
    // endpoint row is only written when its state changes.
    let mut tx = pool.begin().await?;
    let (recorded, disabled): (i64, Option<bool>) = sqlx::query_as(
        "WITH log AS (
             INSERT INTO webhook_delivery_attempts (delivery_id, status_code, error, duration_ms, response_body)
             VALUES ($1, $4, $5, $7, $8)),
         delivery AS (
             UPDATE webhook_deliveries SET status = $3, last_status_code = $4, last_error = $5,
                 next_attempt_at = now() + make_interval(secs => $6), lease_until = NULL,
                 delivered_at = CASE WHEN $3 = 'succeeded' THEN now() END
             WHERE id = $1 AND attempts = $2 AND status = 'pending' RETURNING 1),
         endpoint AS (
             UPDATE webhook_endpoints SET
                 failing_since = CASE WHEN $10 THEN NULL ELSE COALESCE(failing_since, now()) END,
                 status = CASE WHEN $11 OR (NOT $10 AND COALESCE(failing_since, now()) < now() - make_interval(secs => $12))
                               THEN 'disabled' ELSE status END,
                 disabled_at = CASE WHEN status = 'enabled' AND ($11 OR (NOT $10 AND
                                   COALESCE(failing_since, now()) < now() - make_interval(secs => $12)))
                               THEN now() ELSE disabled_at END,
                 disabled_reason = CASE WHEN status = 'enabled' AND $11 THEN 'gone'
                               WHEN status = 'enabled' AND NOT $10 AND
                                   COALESCE(failing_since, now()) < now() - make_interval(secs => $12)
                               THEN 'failing' ELSE disabled_reason END,
                 updated_at = now()
             WHERE id = $9 AND (($10 AND failing_since IS NOT NULL) OR (NOT $10 AND failing_since IS NULL)
                 OR (NOT $10 AND status = 'enabled' AND failing_since < now() - make_interval(secs => $12)) OR $11)
             RETURNING status = 'disabled' AND disabled_at = now() AS disabled)
         SELECT (SELECT count(*) FROM delivery), (SELECT disabled FROM endpoint)",
    )
    .bind(&d.id)
    .bind(d.attempts)
    .bind(status)
    .bind(result.status_code.map(i32::from))
    .bind(&result.error)
    .bind(retry_secs)
    .bind(result.duration_ms)
    .bind(&result.response_body)
    .bind(&d.endpoint_id)
    .bind(matches!(next, Next::Succeeded))
    .bind(disable_endpoint)
    .bind(disable_after.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    // `disabled` is true only for the change that disabled it (its
    // `disabled_at` is this transaction's time), so the event is sent once.
    let newly_disabled = disabled == Some(true);
    if newly_disabled {
        super::meta_events::endpoint_disabled(&mut tx, &d.endpoint_id).await?;
    }
    // Given up after its retries (not because the endpoint is gone or
    // disabled: those are told once, by the endpoint's own event).
    let exhausted = recorded == 1 && matches!(next, Next::Failed) && d.endpoint_enabled && !disable_endpoint;
    if exhausted {
        super::meta_events::delivery_exhausted(&mut tx, &d.id, &d.endpoint_id, d.event_type).await?;
    }
    tx.commit().await?;
    if newly_disabled {
        tracing::warn!(endpoint_id = %d.endpoint_id, "webhook endpoint disabled");
        crate::observe::endpoint_disabled();
    }
    if newly_disabled || exhausted {
        super::notify::ring(pool, super::notify::DELIVERIES);
    }
    Ok(recorded == 1)
}

/// [`record`] for sends that succeeded, several at once (the dispatcher's
/// group commit): the log rows, the deliveries, and the end of their
/// endpoints' failure streaks. Answers the deliveries whose claim was still
/// current.
pub async fn record_succeeded(
    pool: &PgPool,
    sent: &[(&ClaimedDelivery, &SendResult)],
) -> Result<Vec<DeliveryId>, sqlx::Error> {
    let ids: Vec<&str> = sent.iter().map(|(d, _)| d.id.as_str()).collect();
    let attempts: Vec<i32> = sent.iter().map(|(d, _)| d.attempts).collect();
    let endpoints: Vec<&str> = sent.iter().map(|(d, _)| d.endpoint_id.as_str()).collect();
    let codes: Vec<Option<i32>> = sent.iter().map(|(_, r)| r.status_code.map(i32::from)).collect();
    let errors: Vec<Option<&str>> = sent.iter().map(|(_, r)| r.error.as_deref()).collect();
    let durations: Vec<i32> = sent.iter().map(|(_, r)| r.duration_ms).collect();
    let bodies: Vec<Option<&str>> = sent.iter().map(|(_, r)| r.response_body.as_deref()).collect();
    // The dispatcher's sessions join by nested loops over the keys (see
    // `super::dispatcher_pool`): each row of `i` is one index lookup.
    sqlx::query_scalar(
        "WITH i AS (
             SELECT * FROM unnest($1::text[], $2::int4[], $3::text[], $4::int4[], $5::text[], $6::int4[], $7::text[])
                 AS i(id, attempts, endpoint_id, status_code, error, duration_ms, response_body)),
         log AS (
             INSERT INTO webhook_delivery_attempts (delivery_id, status_code, error, duration_ms, response_body)
             SELECT id, status_code, error, duration_ms, response_body FROM i),
         endpoint AS (
             UPDATE webhook_endpoints SET failing_since = NULL, updated_at = now()
             WHERE id = ANY($3) AND failing_since IS NOT NULL)
         UPDATE webhook_deliveries d SET status = 'succeeded', last_status_code = i.status_code, last_error = i.error,
             next_attempt_at = NULL, lease_until = NULL, delivered_at = now()
         FROM i WHERE d.id = i.id AND d.attempts = i.attempts AND d.status = 'pending'
         RETURNING d.id",
    )
    .bind(ids)
    .bind(attempts)
    .bind(endpoints)
    .bind(codes)
    .bind(errors)
    .bind(durations)
    .bind(bodies)
    .fetch_all(pool)
    .await
}
