//! A new payment in one statement: the payment, its purchase (or authorize)
//! transaction, attempt #1, the attempt's outbox message, the
//! `payment.created` event and its deliveries. One round trip and an
//! implicit transaction, instead of `BEGIN`, four statements and `COMMIT`:
//! the intake's throughput is bound by round trips on a small machine.

use serde_json::Value;
use sqlx::PgConnection;

use time::OffsetDateTime;

use super::payments::{NewPayment, PaymentRow};
use crate::domain::{AttemptId, EventId, PaymentStatus, TransactionId};

/// The ids and messages that go with a new payment.
pub struct Companions<'a> {
    /// `purchase` or `authorize`.
    pub kind: &'a str,
    pub transaction_id: &'a TransactionId,
    pub attempt_id: &'a AttemptId,
    pub queue: &'a str,
    pub message: &'a Value,
    pub event_id: &'a EventId,
    /// `{"object": payment}` as rendered before the insert; the statement
    /// fills in what only the database knows (`number`, timestamps).
    pub event_data: &'a Value,
}

/// Inserts the payment and its companions; answers the payment row.
pub async fn create_payment(conn: &mut PgConnection, p: &NewPayment, c: &Companions<'_>) -> Result<PaymentRow, sqlx::Error> {
    sqlx::query_as(
        "WITH audit AS (
             SELECT set_config('payd.actor', $15, true) AS actor, set_config('payd.action', 'payment.create', true) AS action),
         p AS (
             INSERT INTO payments (id, merchant_id, livemode, amount, currency, capture, status, payment_method_id,
                 provider, method, description, reference, external_key, customer_id, metadata)
             SELECT $1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $13, $14 FROM audit
             RETURNING *),
         t AS (
             INSERT INTO transactions (id, payment_id, type, amount, currency, status)
             SELECT $16, p.id, $17, p.amount, p.currency, 'pending' FROM p),
         a AS (
             INSERT INTO attempts (id, payment_id, transaction_id, number, status, scheduled_at, enqueued_at)
             SELECT $18, p.id, $16, 1, 'scheduled', now(), now() FROM p),
         o AS (
             INSERT INTO outbox (queue, payload) SELECT $19, $20 FROM p),
         e AS (
             INSERT INTO events (id, merchant_id, livemode, type, payment_id, data)
             SELECT $21, p.merchant_id, p.livemode, 'payment.created', p.id,
                 jsonb_set(jsonb_set(jsonb_set($22::jsonb,
                     '{object,number}', to_jsonb(p.number)),
                     '{object,created_at}', to_jsonb(to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))),
                     '{object,updated_at}', to_jsonb(to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')))
             FROM p RETURNING id),
         d AS (
             INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
             SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, w.id, 'pending', now()
             FROM webhook_endpoints w, e
             WHERE w.merchant_id = $2 AND w.livemode = $3 AND w.status = 'enabled'
               AND ('payment.created' = ANY (w.enabled_events) OR '*' = ANY (w.enabled_events)))
         SELECT * FROM p",
    )
    .bind(&p.id)
    .bind(&p.scope.merchant_id)
    .bind(p.scope.livemode)
    .bind(p.amount.get())
    .bind(&p.currency)
    .bind(p.capture)
    .bind(&p.payment_method_id)
    .bind(&p.provider)
    .bind(&p.method)
    .bind(&p.description)
    .bind(&p.reference)
    .bind(&p.external_key)
    .bind(&p.customer_id)
    .bind(&p.metadata)
    .bind(&p.scope.actor)
    .bind(c.transaction_id)
    .bind(c.kind)
    .bind(c.attempt_id)
    .bind(c.queue)
    .bind(c.message)
    .bind(c.event_id)
    .bind(c.event_data)
    .fetch_one(conn)
    .await
}

impl NewPayment {
    /// The row as it will be once inserted, but for what the database
    /// assigns (`number`, timestamps): to render the event before the insert.
    pub fn draft_row(&self) -> PaymentRow {
        let now = OffsetDateTime::now_utc();
        PaymentRow {
            id: self.id.clone(),
            number: 0,
            merchant_id: self.scope.merchant_id.clone(),
            livemode: self.scope.livemode,
            amount: self.amount.get(),
            currency: self.currency.clone(),
            capture: self.capture,
            amount_capturable: 0,
            amount_captured: 0,
            amount_refunded: 0,
            status: PaymentStatus::Pending.as_str().to_owned(),
            payment_method_id: self.payment_method_id.clone(),
            provider: self.provider.clone(),
            method: self.method.clone(),
            description: self.description.clone(),
            reference: self.reference.clone(),
            external_key: self.external_key.clone(),
            customer_id: self.customer_id.clone(),
            metadata: self.metadata.clone(),
            tags: Vec::new(),
            fee: 0,
            provider_reference: None,
            error_code: None,
            failure_message: None,
            attempt_count: 0,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
            processed_at: None,
            canceled_at: None,
            cancellation_reason: None,
        }
    }
}

