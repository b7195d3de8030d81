//! `POST /v1/provider_notifications/stripe/{provider_account_id}`: Stripe's
//! webhooks for a merchant's connected account (contract §12). Verified with
//! the account's `webhook_secret`; each event applied once (by its id), in
//! one transaction with its effects; only to payments charged on that very
//! account. Events arrive in any order: a state is applied only where the
//! state machine takes it, a late success is never dropped, and a failure
//! after a success changes nothing.
//!
//! - `payment_intent.succeeded`, `.amount_capturable_updated`,
//!   `.payment_failed`, `.canceled`: the charge's outcome, read from the
//!   PaymentIntent in the event;
//! - `charge.refunded`, `charge.refund.updated`, `refund.updated`: payd's
//!   refunds among the charge's (by `metadata.payd_transaction_id`);
//! - `charge.dispute.created`: a chargeback of the disputed amount.
//!
//! Other events, and events about PaymentIntents payd did not create, are
//! answered 200 and ignored, so Stripe does not retry them.

use serde_json::{Value, json};

use super::{ApiError, Ctx, ErrorCode, IdempotencyKey};
use crate::db::payments::{self as store, PaymentRow};
use crate::db::transactions::TransactionRow;
use crate::db::{audit, notifications, payment_methods, provider_accounts, transactions as txns};
use crate::domain::{PaymentMethodId, ProviderAccountId, SYSTEM_ACTOR, Scope, TransactionId, TransactionKind};
use crate::provider::stripe::credentials::Credentials;
use crate::provider::stripe::events::{self, EVENT_ID_MAX, Event};
use crate::provider::stripe::{self, objects};
use crate::provider::{Operation, ProviderOutcome};

fn ignored(why: &str) -> Value {
    tracing::info!(why, "stripe event ignored");
    json!({"received": true, "ignored": true})
}

/// Verifies and applies one event.
pub async fn receive(ctx: &Ctx, account: &str, signature: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let not_found = || ApiError::not_found("provider account");
    let account = ProviderAccountId::parse(account).ok_or_else(not_found)?;
    let sealed = provider_accounts::sealed(&ctx.db, &account)
        .await?
        .filter(|s| s.provider == stripe::NAME)
        .ok_or_else(not_found)?;
    let credentials = Credentials::open(&ctx.secrets, &account, &sealed.credentials)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("provider account {account}: {e}")))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    events::verify(&credentials.webhook_secret, signature, body, now)
        .map_err(|e| ApiError::new(400, ErrorCode::SignatureInvalid, e.to_string()))?;
    let event: Event = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, ErrorCode::NotificationInvalid, format!("the event is malformed: {e}")))?;
    if event.id.is_empty() || event.id.len() > EVENT_ID_MAX {
        return Err(ApiError::new(400, ErrorCode::NotificationInvalid, "the event id is malformed"));
    }
    let scope = Scope::system(sealed.merchant_id, sealed.livemode);
    let on = On { ctx, scope: &scope, account: &account, event: &event };
    let answer = match event.kind.as_str() {
        "payment_intent.succeeded"
        | "payment_intent.amount_capturable_updated"
        | "payment_intent.payment_failed"
        | "payment_intent.canceled" => on.intent().await?,
        "charge.refunded" | "charge.refund.updated" | "refund.updated" => on.refunds().await?,
        "charge.dispute.created" => on.dispute().await?,
        _ => ignored("event type payd does not use"),
    };
    crate::db::notify::ring(&ctx.db, crate::db::notify::DELIVERIES);
    Ok(answer)
}

/// One event for one account.
struct On<'a> {
    ctx: &'a Ctx,
    scope: &'a Scope,
    account: &'a ProviderAccountId,
    event: &'a Event,
}

impl On<'_> {
    fn object(&self) -> &Value {
        &self.event.data.object
    }

    /// The PaymentIntent the event is about.
    fn intent_id(&self) -> Option<&str> {
        let object = self.object();
        let id = match object.get("object").and_then(Value::as_str) {
            Some("payment_intent") => object.get("id"),
            _ => object.get("payment_intent"),
        };
        id.and_then(Value::as_str).filter(|id| id.starts_with("pi_"))
    }

    /// The charge transaction of the PaymentIntent and its payment, locked,
    /// if the payment was charged on this account.
    async fn charge(&self, tx: &mut sqlx::PgConnection) -> Result<Option<(PaymentRow, TransactionRow)>, ApiError> {
        let Some(intent) = self.intent_id() else { return Ok(None) };
        let kinds = [TransactionKind::Purchase, TransactionKind::Authorize];
        let Some(txn) = txns::by_provider_reference(tx, intent, &kinds).await? else { return Ok(None) };
        let Some(payment) = store::lock_by_id(tx, &txn.payment_id).await? else { return Ok(None) };
        let method = match PaymentMethodId::parse(&payment.payment_method_id) {
            Some(id) => payment_methods::account_of(tx, &id).await?,
            None => None,
        };
        // Another merchant's payment (or another mode's) is never touched,
        // whatever the event names.
        let ours = payment.provider == stripe::NAME
            && payment.merchant_id == self.scope.merchant_id
            && payment.livemode == self.scope.livemode
            && method.as_ref() == Some(self.account);
        if !ours {
            tracing::warn!(payment_id = %payment.id, account = %self.account, "a Stripe event names another account's payment");
            return Ok(None);
        }
        Ok(Some((payment, txn)))
    }

    /// Begins the event's transaction; `None` when it was applied before.
    async fn begin(&self) -> Result<Option<crate::db::Tx<'static>>, ApiError> {
        let mut tx = self.ctx.db.begin().await?;
        audit::act(&mut tx, SYSTEM_ACTOR, "provider.notification").await?;
        let source = format!("{}/{}", stripe::NAME, self.account);
        if !notifications::record_once(&mut tx, &source, &self.event.id).await? {
            return Ok(None);
        }
        Ok(Some(tx))
    }

    async fn intent(&self) -> Result<Value, ApiError> {
        let Some(outcome) = objects::charge_outcome(self.object()) else {
            return Ok(ignored("the PaymentIntent waits for confirmation"));
        };
        if matches!(outcome, ProviderOutcome::Pending { .. } | ProviderOutcome::RequiresAction { .. }) {
            return Ok(ignored("the PaymentIntent has no outcome yet"));
        }
        let Some(mut tx) = self.begin().await? else { return Ok(json!({"received": true, "duplicate": true})) };
        let Some((payment, txn)) = self.charge(&mut tx).await? else {
            return Ok(ignored("not a PaymentIntent of a payd payment on this account"));
        };
        if matches!(outcome, ProviderOutcome::Failed { .. })
            && let Some(code) = objects::last_error(self.object()).1
        {
            txns::set_provider_code(&mut *tx, &txn.id, &code).await?;
        }
        let operation = if txn.kind == TransactionKind::Authorize { Operation::Authorize } else { Operation::Purchase };
        super::notifications::apply(self.ctx, &mut tx, &payment, &txn, operation, &outcome).await?;
        tx.commit().await?;
        crate::db::notify::ring_with(&self.ctx.db, crate::db::notify::PAYMENT_STATUS, payment.id.as_str());
        Ok(json!({"received": true}))
    }

    async fn refunds(&self) -> Result<Value, ApiError> {
        let object = self.object();
        let refunds: Vec<&Value> = match object.get("object").and_then(Value::as_str) {
            Some("refund") => vec![object],
            _ => object
                .pointer("/refunds/data")
                .and_then(Value::as_array)
                .map(|r| r.iter().collect())
                .unwrap_or_default(),
        };
        let Some(mut tx) = self.begin().await? else { return Ok(json!({"received": true, "duplicate": true})) };
        let Some((payment, charge)) = self.charge(&mut tx).await? else {
            return Ok(ignored("not a charge of a payd payment on this account"));
        };
        let mut applied = 0;
        // Stripe lists at most the latest refunds here; payd's own calls
        // and inquiries settle the rest.
        for refund in refunds.iter().take(100) {
            let Some(id) = refund.pointer("/metadata/payd_transaction_id").and_then(Value::as_str) else { continue };
            let Some(id) = TransactionId::parse(id) else { continue };
            let Some(txn) = txns::get(&mut tx, &id).await? else { continue };
            if txn.kind != TransactionKind::Refund || txn.payment_id != charge.payment_id {
                continue;
            }
            let outcome = objects::refund_outcome(refund);
            if matches!(outcome, ProviderOutcome::Pending { .. }) {
                continue;
            }
            // Each refund sees the payment as the previous one left it.
            let payment = store::lock_by_id(&mut tx, &payment.id).await?.unwrap_or_else(|| payment.clone());
            super::notifications::apply(self.ctx, &mut tx, &payment, &txn, Operation::Refund, &outcome).await?;
            applied += 1;
        }
        tx.commit().await?;
        crate::db::notify::ring_with(&self.ctx.db, crate::db::notify::PAYMENT_STATUS, payment.id.as_str());
        Ok(json!({"received": true, "refunds": applied}))
    }

    /// A dispute is recorded as a chargeback of its amount, once per dispute
    /// (its id is the idempotency key of the chargeback).
    async fn dispute(&self) -> Result<Value, ApiError> {
        let object = self.object();
        let Some(amount) = object.get("amount").and_then(Value::as_i64) else {
            return Err(ApiError::new(400, ErrorCode::NotificationInvalid, "the dispute has no amount"));
        };
        let dispute = object.get("id").and_then(Value::as_str).unwrap_or(&self.event.id);
        let payment_id = {
            let mut tx = self.ctx.db.begin().await?;
            let Some((payment, _)) = self.charge(&mut tx).await? else {
                return Ok(ignored("not a charge of a payd payment on this account"));
            };
            payment.id
        };
        let reason = object.get("reason").and_then(Value::as_str).unwrap_or("dispute");
        let body = json!({"amount": amount, "reason": format!("stripe dispute {dispute}: {reason}")});
        let path = format!("/v1/payments/{payment_id}/chargebacks");
        let key = IdempotencyKey::new(&format!("stripe-dispute-{dispute}"), "POST", &path, &body)?;
        match super::lifecycle::chargeback(self.ctx, self.scope, payment_id.as_str(), body, Some(&key)).await {
            Ok(_) => Ok(json!({"received": true})),
            // More than is left to take back (refunded meanwhile): recorded
            // in the logs for an operator; Stripe need not send it again.
            Err(e) if e.status < 500 => {
                tracing::warn!(payment_id = %payment_id, dispute, error = %e.message, "a Stripe dispute could not be recorded");
                Ok(ignored("the dispute does not fit the payment"))
            }
            Err(e) => Err(e),
        }
    }
}
