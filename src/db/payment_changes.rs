//! Every statement that changes an existing payment, one named function per
//! change. The caller holds the payment's row lock (see
//! [`super::payments::lock_for_change`]) in the same transaction; each
//! statement still carries the guard of the transition it makes (`WHERE
//! status = …`, or the amount it takes from), so a race can never skip a
//! rule of the state machine. The audit trigger records each change with the
//! transaction's actor. Charge outcomes, written in batches, are in
//! [`super::charges`].

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::payments::PaymentRow;
use crate::domain::{Amount, FailureCode, PaymentId, PaymentStatus, Transition};

/// `pending` or `requires_capture` → `canceled`: the cancel of `transition`,
/// with its reason; nothing is capturable afterwards. `None` when the
/// payment was not in `transition.from`.
pub async fn cancel(
    conn: &mut PgConnection,
    id: &PaymentId,
    transition: Transition,
    reason: Option<&str>,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = $2, canceled_at = now(), cancellation_reason = $3, next_attempt_at = NULL,
             amount_capturable = 0, next_action = NULL, updated_at = now()
         WHERE id = $1 AND status = $4 RETURNING *",
    )
    .bind(id)
    .bind(transition.to)
    .bind(reason)
    .bind(transition.from)
    .fetch_optional(conn)
    .await
}

/// `failed` or `canceled` → `transition.to` for a success the provider
/// reported late (contract §12): the charge's amounts and reference, the
/// failure and cancellation cleared. `None` when the payment was not in
/// `transition.from`.
pub async fn late_success(
    conn: &mut PgConnection,
    id: &PaymentId,
    transition: Transition,
    reference: &str,
    captured: i64,
    capturable: i64,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = $2, provider_reference = $3, amount_captured = $4, amount_capturable = $5,
             error_code = NULL, failure_message = NULL, canceled_at = NULL, cancellation_reason = NULL,
             next_attempt_at = NULL, next_action = NULL, updated_at = now()
         WHERE id = $1 AND status = $6 RETURNING *",
    )
    .bind(id)
    .bind(transition.to)
    .bind(reference)
    .bind(captured)
    .bind(capturable)
    .bind(transition.from)
    .fetch_optional(conn)
    .await
}

/// `pending` → `failed` without a provider answer (a canceled retry): the
/// failure of `transition` with `code` and `message`. `None` when the
/// payment was not in `transition.from`.
pub async fn fail(
    conn: &mut PgConnection,
    id: &PaymentId,
    transition: Transition,
    code: FailureCode,
    message: &str,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = $2, error_code = $3, failure_message = $4, next_attempt_at = NULL, updated_at = now()
         WHERE id = $1 AND status = $5 RETURNING *",
    )
    .bind(id)
    .bind(transition.to)
    .bind(code)
    .bind(message)
    .bind(transition.from)
    .fetch_optional(conn)
    .await
}

/// `pending` → `requires_action` (the transition's guard), with what the
/// customer must do and the provider's reference (the PaymentIntent a
/// client-side SDK confirms); or, with no transition, a new `next_action` for a
/// payment already waiting. `None` when the payment was not in the state.
pub async fn require_action(
    conn: &mut PgConnection,
    id: &PaymentId,
    from: PaymentStatus,
    to: PaymentStatus,
    reference: &str,
    next_action: &serde_json::Value,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = $3, next_action = $4, provider_reference = $5, next_attempt_at = NULL,
             updated_at = now()
         WHERE id = $1 AND status = $2 RETURNING *",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(next_action)
    .bind(reference)
    .fetch_optional(conn)
    .await
}

/// A capture on a provider that captures once (Stripe) succeeded: the
/// provider released the rest of the authorization, so nothing is
/// capturable any more.
pub async fn release_rest(conn: &mut PgConnection, id: &PaymentId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET amount_capturable = 0, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A capture asked for: `amount` is taken from `amount_capturable` at once,
/// so concurrent captures never exceed the authorization. `None` when less
/// than `amount` is capturable.
pub async fn reserve_capture(
    conn: &mut PgConnection,
    id: &PaymentId,
    amount: Amount,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET amount_capturable = amount_capturable - $2, updated_at = now()
         WHERE id = $1 AND amount_capturable >= $2 RETURNING *",
    )
    .bind(id)
    .bind(amount)
    .fetch_optional(conn)
    .await
}

/// A reserved capture that will not happen (it failed, or its retry was
/// canceled): its amount is capturable again.
pub async fn release_capture(conn: &mut PgConnection, id: &PaymentId, amount: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET amount_capturable = amount_capturable + $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(amount)
        .execute(conn)
        .await?;
    Ok(())
}

/// A capture the provider confirmed: `amount_captured` becomes `captured`,
/// and the status `to` (the first capture makes it `succeeded`), guarded by
/// the status `from` it was read in. `None` when the status moved on.
pub async fn record_capture(
    conn: &mut PgConnection,
    id: &PaymentId,
    from: PaymentStatus,
    to: PaymentStatus,
    captured: i64,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = $2, amount_captured = $3, processed_at = COALESCE(processed_at, now()),
             updated_at = now()
         WHERE id = $1 AND status = $4 RETURNING *",
    )
    .bind(id)
    .bind(to)
    .bind(captured)
    .bind(from)
    .fetch_optional(conn)
    .await
}

/// Money refunded or charged back (or a chargeback reversed):
/// `amount_refunded` becomes `refunded` and the status `to`, guarded by the
/// status `from` it was read in. `None` when the status moved on.
pub async fn set_refunded(
    conn: &mut PgConnection,
    id: &PaymentId,
    from: PaymentStatus,
    to: PaymentStatus,
    refunded: i64,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET status = $2, amount_refunded = $3, updated_at = now() WHERE id = $1 AND status = $4
         RETURNING *",
    )
    .bind(id)
    .bind(to)
    .bind(refunded)
    .bind(from)
    .fetch_optional(conn)
    .await
}

/// A transient failure of a pending charge with a retry scheduled: one more
/// attempt counted, and when the next one is due.
pub async fn count_retry(
    conn: &mut PgConnection,
    id: &PaymentId,
    due: OffsetDateTime,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE payments SET attempt_count = attempt_count + 1, next_attempt_at = $2, updated_at = now()
         WHERE id = $1 AND status = 'pending' RETURNING *",
    )
    .bind(id)
    .bind(due)
    .fetch_optional(conn)
    .await
}

/// An operator moved a pending payment's scheduled retry (run now, or
/// rescheduled): `next_attempt_at` says the new time. Only a payment that
/// waits for a retry has one to move.
pub async fn move_next_attempt(conn: &mut PgConnection, id: &PaymentId, at: OffsetDateTime) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET next_attempt_at = $2, updated_at = now()
         WHERE id = $1 AND status = 'pending' AND next_attempt_at IS NOT NULL",
    )
    .bind(id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// New metadata and description, in any status.
pub async fn update_details(
    conn: &mut PgConnection,
    id: &PaymentId,
    metadata: &Value,
    description: Option<&str>,
) -> Result<PaymentRow, sqlx::Error> {
    sqlx::query_as("UPDATE payments SET metadata = $2, description = $3, updated_at = now() WHERE id = $1 RETURNING *")
        .bind(id)
        .bind(metadata)
        .bind(description)
        .fetch_one(conn)
        .await
}

/// New tags, in any status.
pub async fn set_tags(conn: &mut PgConnection, id: &PaymentId, tags: &[String]) -> Result<PaymentRow, sqlx::Error> {
    sqlx::query_as("UPDATE payments SET tags = $2, updated_at = now() WHERE id = $1 RETURNING *")
        .bind(id)
        .bind(tags)
        .fetch_one(conn)
        .await
}
