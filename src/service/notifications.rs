//! `POST /v1/provider_notifications/{provider}`: a provider's signed word on
//! a call it answered "pending". Verified with the provider's secret, applied
//! once (by notification id), in one transaction with its effects.

use serde_json::{Value, json};

use super::late;
use super::outcomes::{self, Schedules};
use super::{ApiError, Ctx, ErrorCode};
use crate::db::payments::PaymentRow;
use crate::db::transactions::TransactionRow;
use crate::db::{attempts, audit, notifications, payments as store, transactions as txns};
use crate::domain::{FailureCode, PaymentStatus, SYSTEM_ACTOR, TransactionId, TransactionKind};
use crate::provider::notification::{self, Notification};
use crate::provider::{Operation, ProviderOutcome};

/// Verifies and applies one notification.
pub async fn receive(ctx: &Ctx, provider: &str, signature: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let settings = ctx.settings.providers.get(provider).ok_or_else(|| ApiError::not_found("provider"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // A gateway signs with its own notification secret, never with the
    // bearer token payd sends it (which the gateway's side may log).
    let key =
        if provider == "sandbox" { Some(settings.secret.as_str()) } else { settings.notification_secret.as_deref() };
    let key = key.ok_or_else(|| {
        ApiError::new(
            400,
            ErrorCode::SignatureInvalid,
            "this provider has no notification_secret: its notifications are refused",
        )
    })?;
    notification::verify(key, signature, body, now)
        .map_err(|e| ApiError::new(400, ErrorCode::SignatureInvalid, e.to_string()))?;
    let note: Notification = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(400, ErrorCode::NotificationInvalid, format!("the notification is malformed: {e}"))
    })?;
    let reference = note.reference.clone().unwrap_or_default();
    let message = note.message.clone().unwrap_or_else(|| "the provider declined the operation".to_owned());
    let unknown = || ApiError::invalid("type", format!("unknown notification type {}", note.kind));
    let (name, result) = note.kind.split_once('.').ok_or_else(unknown)?;
    let operation = Operation::from_notification_name(name).ok_or_else(unknown)?;
    let outcome = match result {
        "succeeded" => ProviderOutcome::Succeeded { reference },
        "failed" => ProviderOutcome::Failed { code: FailureCode::from_provider(note.error_code.as_deref()), message },
        _ => return Err(unknown()),
    };
    let txn_id = TransactionId::parse(&note.idempotency_key).ok_or_else(|| ApiError::not_found("transaction"))?;
    let mut tx = ctx.db.begin().await?;
    audit::act(&mut tx, SYSTEM_ACTOR, "provider.notification").await?;
    let txn = txns::get(&mut tx, &txn_id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    let payment =
        store::lock_by_id(&mut tx, &txn.payment_id).await?.ok_or_else(|| ApiError::not_found("transaction"))?;
    if payment.provider != provider || Operation::of(txn.kind) != Some(operation) {
        return Err(ApiError::not_found("transaction"));
    }
    if !notifications::record_once(&mut tx, provider, &note.id).await? {
        return Ok(json!({"received": true, "duplicate": true}));
    }
    apply(ctx, &mut tx, &payment, &txn, operation, &outcome).await?;
    tx.commit().await?;
    crate::db::notify::ring(&ctx.db, crate::db::notify::DELIVERIES);
    crate::db::notify::ring_with(&ctx.db, crate::db::notify::PAYMENT_STATUS, payment.id.as_str());
    Ok(json!({"received": true}))
}

/// Applies a provider's word on a transaction, in the caller's transaction
/// with `payment` locked. A call still waiting is settled here. Otherwise a
/// failure or a repeat changes nothing, but a success is never dropped: a
/// charge's (the customer was charged although payd settled the payment as
/// failed or canceled, or still asks about it) nor a refund's (the money
/// went back).
pub(super) async fn apply(
    ctx: &Ctx,
    tx: &mut sqlx::PgConnection,
    payment: &PaymentRow,
    txn: &TransactionRow,
    operation: Operation,
    outcome: &ProviderOutcome,
) -> Result<(), ApiError> {
    // A charge the provider reports succeeded although payd settled the
    // payment (a cancel while the customer was authenticating, say).
    let settled = matches!(payment.status, PaymentStatus::Failed | PaymentStatus::Canceled);
    let succeeded = matches!(outcome, ProviderOutcome::Succeeded { .. });
    if let Some(running) = attempts::running_for(tx, &txn.id).await? {
        let (status, code) = outcomes::attempt_result(outcome);
        attempts::finish(tx, &running, status, code).await?;
        if !(settled && succeeded && txn.kind.is_charge()) {
            let schedules = Schedules::new(&ctx.settings.payments);
            outcomes::record(tx, payment, txn, &running, operation, outcome, &schedules)
                .await
                .map_err(ApiError::internal)?;
            return Ok(());
        }
    }
    if let ProviderOutcome::Succeeded { reference } = outcome
        && txn.kind.is_charge()
        && (settled || matches!(payment.status, PaymentStatus::Pending | PaymentStatus::RequiresAction))
    {
        late::late_success(tx, payment, txn, reference).await.map_err(ApiError::internal)?;
    } else if let ProviderOutcome::Succeeded { reference } = outcome
        && txn.kind == TransactionKind::Refund
    {
        late::late_refund_success(tx, payment, txn, reference).await.map_err(ApiError::internal)?;
    }
    Ok(())
}
