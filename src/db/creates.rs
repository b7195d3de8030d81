//! Creating payments: each payment, its purchase (or authorize)
//! transaction, attempt #1, the attempt's outbox message, the
//! `payment.created` event and its deliveries, in one statement. One round
//! trip and an implicit transaction per *batch*: the `create` stage of the
//! [group commit](super::group_commit) hands this the creates of concurrent
//! requests together, because the commit path, not the HTTP layer, is what
//! bounds creates on a small machine. When a batch is refused for one row (a
//! taken `external_key`, or a pending `reference`, even within the same
//! batch), it is split until each refused create gets its own answer.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::group_commit::GroupCommit;
use super::payments::{NewPayment, PaymentRow};
use crate::domain::messages::ATTEMPTS_QUEUE;
use crate::domain::{AttemptId, EventId, PaymentStatus, TransactionId, TransactionKind};

/// The handle requests write their creates through; cheap to clone.
#[derive(Clone, Debug)]
pub struct Creates {
    writer: GroupCommit<Draft, Option<PaymentRow>>,
}

impl Creates {
    /// Starts the writer task on the current runtime. It ends when the last
    /// handle is dropped, after writing what was handed to it.
    pub fn start(pool: PgPool) -> Self {
        let writer = GroupCommit::start("create", pool, move |pool, drafts: Vec<Arc<Draft>>| async move {
            let mut conn = pool.acquire().await?;
            let drafts: Vec<&Draft> = drafts.iter().map(AsRef::as_ref).collect();
            insert_all(&mut conn, &drafts).await
        });
        Self { writer }
    }

    /// Inserts the draft with the next batch; answers its row once that
    /// batch committed, or `None` when its `Idempotency-Key` was taken by
    /// another request meanwhile (nothing of it was written).
    pub async fn insert(&self, draft: Arc<Draft>) -> Result<Option<PaymentRow>, sqlx::Error> {
        self.writer.submit(draft).await
    }
}

/// A payment ready to insert, with the ids and messages that go with it.
pub struct Draft {
    pub payment: NewPayment,
    /// `purchase` or `authorize`.
    pub kind: TransactionKind,
    pub transaction_id: TransactionId,
    pub attempt_id: AttemptId,
    /// The attempt's work message.
    pub message: Value,
    pub event_id: EventId,
    /// `{"object": payment}` as rendered before the insert; the statement
    /// fills in what only the database knows (`number`, timestamps).
    pub event_data: Value,
    /// The request's `Idempotency-Key`: its answer (201 and the payment) is
    /// stored with the payment, in the same statement.
    pub key: Option<KeyRecord>,
}

/// An `Idempotency-Key` and the fingerprint of its request.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub key: String,
    pub fingerprint: Vec<u8>,
}

/// Inserts the drafts and their companions in one statement (all or none);
/// answers their payment rows in the drafts' order: `None` for a keyed
/// draft whose key a live answer holds (nothing of it was written).
async fn insert_all(conn: &mut PgConnection, drafts: &[&Draft]) -> Result<Vec<Option<PaymentRow>>, sqlx::Error> {
    let col = |f: &dyn Fn(&Draft) -> Option<String>| drafts.iter().map(|d| f(d)).collect::<Vec<_>>();
    let rows: Vec<PaymentRow> = sqlx::query_as(
        "WITH i AS MATERIALIZED (
             SELECT u.*, nextval(pg_get_serial_sequence('payments', 'number')) AS number
             FROM unnest($1::text[], $2::text[], $3::bool[], $4::int8[], $5::text[], $6::bool[], $7::text[],
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::jsonb[], $15::text[],
                 $16::text[], $17::text[], $18::text[], $19::jsonb[], $20::text[], $21::jsonb[], $23::text[], $24::bytea[])
             AS u(id, merchant_id, livemode, amount, currency, capture, payment_method_id, provider, method,
                 description, reference, external_key, customer_id, metadata, created_by,
                 transaction_id, kind, attempt_id, message, event_id, event_data, key, fingerprint)),
         -- The payment object as the database will hold it: `number` is
         -- taken above and both timestamps are now(), the transaction's time.
         b AS MATERIALIZED (
             SELECT id, key, jsonb_set(jsonb_set(jsonb_set(event_data,
                     '{object,number}', to_jsonb(number)),
                     '{object,created_at}', to_jsonb(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))),
                     '{object,updated_at}', to_jsonb(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')))
                 AS data
             FROM i),
         -- A key is claimed unless a live answer holds it (an expired one is
         -- replaced); a draft whose key is taken is not written.
         k AS (
             INSERT INTO idempotency_keys (merchant_id, key, fingerprint, response_status, response_body)
             SELECT i.merchant_id, i.key, i.fingerprint, 201, b.data -> 'object' FROM i JOIN b ON b.id = i.id
             WHERE i.key IS NOT NULL
             ON CONFLICT (merchant_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
                 response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body, created_at = now()
                 WHERE idempotency_keys.created_at <= now() - make_interval(hours => $25)
             RETURNING merchant_id, key),
         p AS (
             INSERT INTO payments (id, number, merchant_id, livemode, amount, currency, capture, status, payment_method_id,
                 provider, method, description, reference, external_key, customer_id, metadata, created_by)
             OVERRIDING SYSTEM VALUE
             SELECT id, number, merchant_id, livemode, amount, currency, capture, 'pending', payment_method_id,
                 provider, method, description, reference, external_key, customer_id, metadata, created_by FROM i
             WHERE i.key IS NULL OR EXISTS (SELECT 1 FROM k WHERE k.merchant_id = i.merchant_id AND k.key = i.key)
             RETURNING *),
         pi AS MATERIALIZED (SELECT p.id, p.merchant_id, p.livemode, p.amount, p.currency,
                 i.transaction_id, i.kind, i.attempt_id, i.message, i.event_id, b.data
             FROM p JOIN i ON i.id = p.id JOIN b ON b.id = p.id),
         t AS (
             INSERT INTO transactions (id, payment_id, type, amount, currency, status)
             SELECT transaction_id, id, kind, amount, currency, 'pending' FROM pi),
         a AS (
             INSERT INTO attempts (id, payment_id, transaction_id, number, status, scheduled_at, enqueued_at)
             SELECT attempt_id, id, transaction_id, 1, 'scheduled', now(), now() FROM pi),
         o AS (
             INSERT INTO outbox (queue, payload) SELECT $22, message FROM pi),
         e AS (
             INSERT INTO events (id, merchant_id, livemode, type, payment_id, data)
             SELECT event_id, merchant_id, livemode, 'payment.created', id, data
             FROM pi RETURNING id, merchant_id, livemode),
         d AS (
             INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, next_attempt_at)
             SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, w.id, 'pending', now()
             FROM e JOIN webhook_endpoints w ON w.merchant_id = e.merchant_id AND w.livemode = e.livemode
             WHERE w.status = 'enabled'
               AND ('payment.created' = ANY (w.enabled_events) OR '*' = ANY (w.enabled_events)))
         SELECT * FROM p",
    )
    .bind(col(&|d| Some(d.payment.id.to_string())))
    .bind(col(&|d| Some(d.payment.scope.merchant_id.to_string())))
    .bind(drafts.iter().map(|d| d.payment.scope.livemode).collect::<Vec<_>>())
    .bind(drafts.iter().map(|d| d.payment.amount.get()).collect::<Vec<_>>())
    .bind(col(&|d| Some(d.payment.currency.code().to_owned())))
    .bind(drafts.iter().map(|d| d.payment.capture).collect::<Vec<_>>())
    .bind(col(&|d| Some(d.payment.payment_method_id.clone())))
    .bind(col(&|d| Some(d.payment.provider.clone())))
    .bind(col(&|d| Some(d.payment.method.as_str().to_owned())))
    .bind(col(&|d| d.payment.description.clone()))
    .bind(col(&|d| d.payment.reference.clone()))
    .bind(col(&|d| d.payment.external_key.clone()))
    .bind(col(&|d| d.payment.customer_id.clone()))
    .bind(drafts.iter().map(|d| d.payment.metadata.clone()).collect::<Vec<_>>())
    .bind(col(&|d| Some(d.payment.scope.actor.clone())))
    .bind(col(&|d| Some(d.transaction_id.to_string())))
    .bind(col(&|d| Some(d.kind.as_str().to_owned())))
    .bind(col(&|d| Some(d.attempt_id.to_string())))
    .bind(drafts.iter().map(|d| d.message.clone()).collect::<Vec<_>>())
    .bind(col(&|d| Some(d.event_id.to_string())))
    .bind(drafts.iter().map(|d| d.event_data.clone()).collect::<Vec<_>>())
    .bind(ATTEMPTS_QUEUE)
    .bind(col(&|d| d.key.as_ref().map(|k| k.key.clone())))
    .bind(drafts.iter().map(|d| d.key.as_ref().map(|k| k.fingerprint.clone())).collect::<Vec<_>>())
    .bind(super::idempotency::RETENTION_HOURS)
    .fetch_all(conn)
    .await?;
    // RETURNING's order is not the input's.
    let mut by_id: HashMap<String, PaymentRow> = rows.into_iter().map(|r| (r.id.to_string(), r)).collect();
    drafts
        .iter()
        .map(|d| match by_id.remove(d.payment.id.as_str()) {
            Some(row) => Ok(Some(row)),
            None if d.key.is_some() => Ok(None),
            None => Err(sqlx::Error::RowNotFound),
        })
        .collect()
}

impl NewPayment {
    /// The row as it will be once inserted, but for what the database
    /// assigns (`number`, timestamps): to render the event before the insert.
    pub fn draft_row(&self) -> PaymentRow {
        let now = OffsetDateTime::now_utc();
        PaymentRow {
            id: self.id.clone(),
            number: 0,
            sequence: 1,
            merchant_id: self.scope.merchant_id.clone(),
            livemode: self.scope.livemode,
            amount: self.amount,
            currency: self.currency,
            capture: self.capture,
            amount_capturable: 0,
            next_action: None,
            amount_captured: 0,
            amount_refunded: 0,
            status: PaymentStatus::Pending,
            payment_method_id: self.payment_method_id.clone(),
            provider: self.provider.clone(),
            method: self.method,
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
