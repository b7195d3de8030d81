//! The `stripe` provider (contract §12): Stripe's PaymentIntents API, on
//! each merchant's own account (`/v1/provider_accounts`).
//!
//! A charge is two requests, so that the PaymentIntent's id is stored
//! before anything can be lost: create the PaymentIntent unconfirmed
//! (`Idempotency-Key` = payd's transaction id; nothing is charged yet),
//! note its id on the transaction, then confirm it. A repeated attempt (a
//! retry, a crash, an inquiry) starts from the stored PaymentIntent: it
//! confirms one still waiting for confirmation and reads the outcome of
//! any other, so it never charges twice, even on a Stripe imitation that
//! ignores idempotency keys. Capture, void and refund map to the
//! PaymentIntent's capture and cancel and to `/v1/refunds`; an unknown
//! outcome is settled by retrieving the PaymentIntent (or listing its
//! refunds).

pub mod api;
pub mod credentials;
pub mod events;
pub mod objects;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::PgPool;

use self::api::{Api, Reply};
use self::credentials::Credentials;
use super::{Inquiry, Operation, Provider, ProviderOutcome, ProviderRequest};
use crate::config::Settings;
use crate::db::{provider_accounts, transactions as txns};
use crate::domain::{FailureCode, TransactionId};
use crate::secretbox::SecretBox;

/// The provider's name in payments, payment methods and settings.
pub const NAME: &str = "stripe";
/// Stripe's API when `providers.stripe.base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// The Stripe provider.
pub struct Stripe {
    api: Api,
    pool: PgPool,
    secrets: Arc<SecretBox>,
}

fn failed(code: FailureCode, message: impl Into<String>) -> ProviderOutcome {
    ProviderOutcome::Failed { code, message: message.into() }
}

impl Stripe {
    /// From `[providers.stripe]` (only `base_url` and `timeout`).
    pub fn new(pool: PgPool, settings: &Settings) -> reqwest::Result<Self> {
        let own = settings.providers.get(NAME);
        let base_url = own.and_then(|s| s.base_url.as_deref()).unwrap_or(DEFAULT_BASE_URL);
        let timeout = own.map_or(settings.payments.provider_timeout, |s| s.timeout);
        Ok(Self { api: Api::new(base_url, timeout)?, pool, secrets: Arc::new(settings.secret_box()) })
    }

    /// The account's secret key, or the outcome of a call that cannot be
    /// made (nothing was sent).
    async fn secret_key(&self, req: &ProviderRequest) -> Result<String, ProviderOutcome> {
        let not_configured =
            || failed(FailureCode::ProviderError, "The Stripe account of this payment is not connected.");
        let Some(account) = &req.account else { return Err(not_configured()) };
        let sealed = match provider_accounts::sealed(&self.pool, account).await {
            Ok(Some(sealed)) => sealed,
            Ok(None) => return Err(not_configured()),
            Err(e) => {
                tracing::warn!(error = %e, "stripe: the account could not be read");
                return Err(failed(FailureCode::ProviderUnavailable, "The provider is unavailable."));
            }
        };
        match Credentials::open(&self.secrets, account, &sealed.credentials) {
            Ok(c) => Ok(c.secret_key),
            Err(e) => {
                tracing::error!(account = %account, error = %e, "stripe: the account's credentials do not open");
                Err(not_configured())
            }
        }
    }

    fn transaction(req: &ProviderRequest) -> Option<TransactionId> {
        TransactionId::parse(&req.idempotency_key)
    }

    /// The PaymentIntent of a charge, if one was created.
    async fn stored_intent(&self, req: &ProviderRequest) -> Result<Option<String>, ProviderOutcome> {
        let Some(txn) = Self::transaction(req) else { return Ok(None) };
        txns::provider_reference(&self.pool, &txn).await.map_err(|e| {
            tracing::warn!(error = %e, "stripe: the transaction could not be read");
            failed(FailureCode::ProviderUnavailable, "The provider is unavailable.")
        })
    }

    /// The outcome of a request that may move money; a decline's own code
    /// is noted on the transaction as `provider_code`.
    async fn outcome(
        &self,
        req: &ProviderRequest,
        reply: Reply,
        read: fn(&Value) -> ProviderOutcome,
    ) -> ProviderOutcome {
        let (outcome, provider_code) = match reply {
            Reply::Object(object) => {
                let outcome = read(&object);
                let code = matches!(outcome, ProviderOutcome::Failed { .. }).then(|| objects::last_error(&object).1);
                (outcome, code.flatten())
            }
            Reply::Declined { code, provider_code, message } => (failed(code, message), provider_code),
            Reply::Transient(message) => (failed(FailureCode::ProviderUnavailable, message), None),
            Reply::Unknown(code, message) => (ProviderOutcome::unknown(code, message), None),
            Reply::Refused { status, code, message } => (refused(status, code.as_deref(), &message), None),
        };
        if let (Some(code), Some(txn)) = (provider_code, Self::transaction(req))
            && let Err(e) = txns::set_provider_code(&self.pool, &txn, &code).await
        {
            tracing::warn!(error = %e, "stripe: the decline code could not be noted");
        }
        outcome
    }

    /// A purchase or authorization: from the stored PaymentIntent if there
    /// is one, else a new one; then confirmed if it waits for that.
    async fn charge(&self, key: &str, req: &ProviderRequest) -> ProviderOutcome {
        let intent = match self.stored_intent(req).await {
            Ok(Some(id)) => match self.api.get(key, &format!("/v1/payment_intents/{id}")).await {
                // Confirmed before: its state is the outcome.
                Reply::Object(intent) if objects::charge_outcome(&intent).is_some() => {
                    return self.outcome(req, Reply::Object(intent), read_charge).await;
                }
                Reply::Object(_) => id,
                // Only read: nothing new happened at Stripe.
                Reply::Refused { status, code, message } => return refused(status, code.as_deref(), &message),
                _ => return failed(FailureCode::ProviderUnavailable, "Stripe could not be asked"),
            },
            Ok(None) => match self.create(key, req).await {
                Ok(id) => id,
                Err(outcome) => return outcome,
            },
            Err(outcome) => return outcome,
        };
        let confirm = format!("{}:confirm", req.idempotency_key);
        let reply = self.api.post(key, &format!("/v1/payment_intents/{intent}/confirm"), &[], &confirm).await;
        self.outcome(req, reply, read_charge).await
    }

    /// Creates the PaymentIntent unconfirmed and stores its id on the
    /// transaction. Nothing is charged until it is confirmed, so every
    /// failure here is one to retry (or a configuration error).
    async fn create(&self, key: &str, req: &ProviderRequest) -> Result<String, ProviderOutcome> {
        let capture_method = if req.operation == Operation::Authorize { "manual" } else { "automatic" };
        let mut form = vec![
            ("amount", req.amount.to_string()),
            ("currency", req.currency.code().to_ascii_lowercase()),
            ("payment_method", req.token.clone()),
            ("capture_method", capture_method.to_owned()),
            ("payment_method_types[0]", "card".to_owned()),
            ("metadata[payd_payment_id]", req.payment_id.clone()),
            ("metadata[payd_transaction_id]", req.idempotency_key.clone()),
        ];
        // A PaymentMethod attached to a Customer is charged with it.
        if let Some(customer) = req.customer.as_ref().filter(|c| c.starts_with("cus_")) {
            form.push(("customer", customer.clone()));
        }
        let intent = match self.api.post(key, "/v1/payment_intents", &form, &req.idempotency_key).await {
            Reply::Object(intent) => intent,
            Reply::Refused { status, code, message } => return Err(refused(status, code.as_deref(), &message)),
            Reply::Declined { code, message, .. } => return Err(failed(code, message)),
            Reply::Transient(message) | Reply::Unknown(_, message) => {
                return Err(failed(FailureCode::ProviderUnavailable, message));
            }
        };
        let id = objects::id(&intent);
        let Some(txn) = Self::transaction(req) else { return Ok(id) };
        let stored = match self.pool.acquire().await {
            Ok(mut conn) => txns::set_provider_reference(&mut conn, &txn, &id).await,
            Err(e) => Err(e),
        };
        stored.map(|()| id).map_err(|e| {
            tracing::warn!(error = %e, "stripe: the PaymentIntent could not be noted; it is not confirmed");
            failed(FailureCode::ProviderUnavailable, "The provider is unavailable.")
        })
    }

    /// The PaymentIntent a capture, void or refund acts on.
    fn parent(req: &ProviderRequest) -> Result<&str, ProviderOutcome> {
        req.parent_reference
            .as_deref()
            .filter(|p| p.starts_with("pi_"))
            .ok_or_else(|| failed(FailureCode::ProviderError, "The payment has no Stripe PaymentIntent."))
    }

    async fn act(&self, key: &str, req: &ProviderRequest) -> ProviderOutcome {
        let intent = match (req.operation, Self::parent(req)) {
            (Operation::Purchase | Operation::Authorize, _) => return self.charge(key, req).await,
            (_, Ok(p)) => p,
            (_, Err(outcome)) => return outcome,
        };
        let ikey = &req.idempotency_key;
        match req.operation {
            Operation::Capture => {
                let form = [("amount_to_capture", req.amount.to_string())];
                let reply = self.api.post(key, &format!("/v1/payment_intents/{intent}/capture"), &form, ikey).await;
                self.outcome(req, reply, |pi| objects::after(Operation::Capture, pi)).await
            }
            Operation::Void => {
                let reply = self.api.post(key, &format!("/v1/payment_intents/{intent}/cancel"), &[], ikey).await;
                self.outcome(req, reply, |pi| objects::after(Operation::Void, pi)).await
            }
            _ => {
                let form = [
                    ("payment_intent", intent.to_owned()),
                    ("amount", req.amount.to_string()),
                    ("metadata[payd_transaction_id]", ikey.clone()),
                ];
                let reply = self.api.post(key, "/v1/refunds", &form, ikey).await;
                self.outcome(req, reply, objects::refund_outcome).await
            }
        }
    }

    async fn ask(&self, key: &str, req: &ProviderRequest) -> Inquiry {
        let intent = match req.operation {
            Operation::Purchase | Operation::Authorize => match self.stored_intent(req).await {
                Ok(Some(id)) => id,
                // Never created, so never confirmed: nothing was charged.
                Ok(None) => return Inquiry::NotReceived,
                Err(_) => return Inquiry::Unknown("the transaction could not be read".into()),
            },
            _ => match Self::parent(req) {
                Ok(p) => p.to_owned(),
                Err(_) => return Inquiry::Unknown("the payment has no Stripe PaymentIntent".into()),
            },
        };
        if req.operation == Operation::Refund {
            return self.ask_refund(key, req, &intent).await;
        }
        match self.api.get(key, &format!("/v1/payment_intents/{intent}")).await {
            Reply::Object(pi) => objects::inquiry(req.operation, &pi),
            other => Inquiry::Unknown(format!("Stripe could not be asked: {}", describe(&other))),
        }
    }

    /// A refund is found among the PaymentIntent's by payd's transaction id.
    async fn ask_refund(&self, key: &str, req: &ProviderRequest, intent: &str) -> Inquiry {
        match self.api.get(key, &format!("/v1/refunds?payment_intent={intent}&limit=100")).await {
            Reply::Object(list) => {
                let mine = list.get("data").and_then(Value::as_array).and_then(|refunds| {
                    refunds.iter().find(|r| {
                        r.pointer("/metadata/payd_transaction_id").and_then(Value::as_str)
                            == Some(req.idempotency_key.as_str())
                    })
                });
                match (mine, list.get("has_more").and_then(Value::as_bool)) {
                    (Some(refund), _) => Inquiry::Answered(objects::refund_outcome(refund)),
                    (None, Some(false) | None) => Inquiry::NotReceived,
                    (None, Some(true)) => Inquiry::Unknown("the PaymentIntent has more than 100 refunds".into()),
                }
            }
            other => Inquiry::Unknown(format!("Stripe could not be asked: {}", describe(&other))),
        }
    }
}

fn read_charge(intent: &Value) -> ProviderOutcome {
    objects::charge_outcome(intent)
        .unwrap_or_else(|| ProviderOutcome::unknown(FailureCode::ProcessingError, "the PaymentIntent is unconfirmed"))
}

/// A request Stripe refused as misconfigured (a revoked key, a parameter
/// it does not take): never a decline. Stripe's message may quote the key,
/// so it is logged, not shown.
fn refused(status: u16, code: Option<&str>, message: &str) -> ProviderOutcome {
    tracing::error!(status, code, message, "stripe refused the request as misconfigured");
    crate::observe::provider_error(status);
    failed(FailureCode::ProviderError, format!("Stripe refused the request ({}).", code.unwrap_or("no code")))
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Object(_) => "an object".into(),
        Reply::Declined { message, .. } | Reply::Transient(message) | Reply::Unknown(_, message) => message.clone(),
        Reply::Refused { status, .. } => format!("it answered {status}"),
    }
}

impl Provider for Stripe {
    fn call<'a>(&'a self, req: &'a ProviderRequest) -> BoxFuture<'a, ProviderOutcome> {
        Box::pin(async move {
            match self.secret_key(req).await {
                Ok(key) => self.act(&key, req).await,
                Err(outcome) => outcome,
            }
        })
    }

    fn inquire<'a>(&'a self, req: &'a ProviderRequest) -> BoxFuture<'a, Inquiry> {
        Box::pin(async move {
            match self.secret_key(req).await {
                Ok(key) => self.ask(&key, req).await,
                Err(_) => Inquiry::Unknown("the Stripe account cannot be used".into()),
            }
        })
    }

    fn needs_account(&self) -> bool {
        true
    }
}
