//! `POST /v1/provider_notifications/{provider}`: a provider's signed word on
//! a call it answered "pending". Verified with the provider's secret, applied
//! once (by notification id), in one transaction with its effects.

use serde_json::{Value, json};

use super::Ctx;
use crate::db::attempts;
use crate::db::payments as store;
use crate::domain::{FailureCode, TransactionId};
use crate::error::ApiError;
use crate::provider::notification::{self, Notification};
use crate::provider::{Operation, ProviderOutcome};
use crate::retry::Schedule;
use crate::worker::{attempt::JITTER, outcome};

fn failure_code(code: Option<&str>) -> FailureCode {
    serde_json::from_value(json!(code)).unwrap_or(FailureCode::CardDeclined)
}

/// Verifies and applies one notification.
pub async fn receive(ctx: &Ctx, provider: &str, signature: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let settings = ctx.settings.providers.get(provider).ok_or_else(|| ApiError::not_found("provider"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    notification::verify(&settings.secret, signature, body, now)
        .map_err(|e| ApiError::new(400, "signature_invalid", e.to_string()))?;
    let note: Notification = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "notification_invalid", format!("the notification is malformed: {e}")))?;
    let reference = note.reference.clone().unwrap_or_default();
    let message = note.message.clone().unwrap_or_else(|| "the provider declined the operation".to_owned());
    let unknown = || ApiError::invalid("type", format!("unknown notification type {}", note.kind));
    let (name, result) = note.kind.split_once('.').ok_or_else(unknown)?;
    let operation = Operation::from_notification_name(name).ok_or_else(unknown)?;
    let outcome = match result {
        "succeeded" => ProviderOutcome::Succeeded { reference },
        "failed" => ProviderOutcome::Failed { code: failure_code(note.error_code.as_deref()), message },
        _ => return Err(unknown()),
    };
    let txn_id = TransactionId::parse(&note.idempotency_key).ok_or_else(|| ApiError::not_found("transaction"))?;
    let mut tx = ctx.db.begin().await?;
    crate::db::audit::act(&mut tx, crate::db::audit::SYSTEM, "provider.notification").await?;
    let txn =
        crate::db::transactions::get(&mut tx, &txn_id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    let payment =
        store::lock_by_id(&mut tx, &txn.payment_id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    if payment.provider != provider || Operation::from_transaction_type(&txn.kind) != Some(operation) {
        return Err(ApiError::not_found("transaction"));
    }
    let fresh = sqlx::query("INSERT INTO provider_notifications (provider, id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(provider)
        .bind(&note.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if !fresh {
        return Ok(json!({"received": true, "duplicate": true}));
    }
    // Only a call still waiting is settled here; one the janitor already
    // settled (or a stale notification) changes nothing.
    if let Some(running) = attempts::running_for(&mut tx, &txn_id).await? {
        let (status, code) = match &outcome {
            ProviderOutcome::Failed { code, .. } => ("failed", Some(code.as_str())),
            _ => ("succeeded", None),
        };
        attempts::finish(&mut tx, &running, status, code).await?;
        let retry = Schedule::new(&ctx.settings.payments.retry_schedule, JITTER);
        outcome::record(&mut tx, &payment, &txn, &running, operation, &outcome, &retry)
            .await
            .map_err(ApiError::internal)?;
    }
    tx.commit().await?;
    crate::db::notify::ring(&ctx.db, crate::db::notify::DELIVERIES);
    crate::db::notify::ring_with(&ctx.db, crate::db::notify::PAYMENT_STATUS, payment.id.as_str());
    Ok(json!({"received": true}))
}
