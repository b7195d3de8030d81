//! Payment providers. A worker asks a provider to charge or refund with the
//! transaction id as idempotency key, so repeating a call whose outcome was
//! lost (timeout, crash) can never charge twice.

pub mod gateway;
pub mod notification;
pub mod sandbox;
pub mod stripe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::PgPool;

use crate::config::Settings;
use crate::domain::{Currency, FailureCode, ProviderAccountId, TransactionKind};

pub use gateway::HttpGateway;
pub use sandbox::{Sandbox, SandboxMethod};
pub use stripe::Stripe;

/// What the provider is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Charge and capture at once.
    Purchase,
    /// Reserve the amount (`capture: false`); captured later.
    Authorize,
    /// Take (part of) an authorized amount.
    Capture,
    /// Release what is authorized and not captured.
    Void,
    /// Give money back.
    Refund,
}

impl Operation {
    const ALL: [Operation; 5] = [Self::Purchase, Self::Authorize, Self::Capture, Self::Void, Self::Refund];

    /// The type of the transaction it settles.
    pub fn kind(self) -> TransactionKind {
        match self {
            Self::Purchase => TransactionKind::Purchase,
            Self::Authorize => TransactionKind::Authorize,
            Self::Capture => TransactionKind::Capture,
            Self::Void => TransactionKind::Void,
            Self::Refund => TransactionKind::Refund,
        }
    }

    /// Its name in metrics and the sandbox's ledger: the transaction type.
    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    /// The call a transaction of `kind` needs; chargebacks need none.
    pub fn of(kind: TransactionKind) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.kind() == kind)
    }

    /// The first word of a provider notification's type about it
    /// (`charge.succeeded`, `authorization.failed`, …).
    pub fn notification_name(self) -> &'static str {
        match self {
            Self::Purchase => "charge",
            Self::Authorize => "authorization",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        }
    }

    /// From a notification's first word.
    pub fn from_notification_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.notification_name() == name)
    }
}

/// One provider call.
#[derive(Clone, Debug)]
pub struct ProviderRequest {
    /// The same for every attempt of a transaction: the transaction id.
    pub idempotency_key: String,
    pub operation: Operation,
    /// The provider's token for the payment method (for the sandbox, the
    /// test method: `pm_test_…` or `tok_…`).
    pub token: String,
    pub amount: i64,
    pub currency: Currency,
    /// The provider's reference of the charge or authorization that a
    /// capture, void or refund acts on.
    pub parent_reference: Option<String>,
    /// The payment the call is for (a provider may record it).
    pub payment_id: String,
    /// The merchant's account at the provider whose credentials the call
    /// uses (Stripe); `None` for deployment-wide providers.
    pub account: Option<ProviderAccountId>,
    /// The payment method's `customer_id` (for Stripe, a `cus_…` the
    /// PaymentMethod is attached to).
    pub customer: Option<String>,
}

/// What the provider answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ProviderOutcome {
    /// Done; the provider's reference for it.
    Succeeded { reference: String },
    /// Not done; hard or transient, as the code says.
    Failed { code: FailureCode, message: String },
    /// Accepted; the outcome follows in a provider notification.
    Pending { reference: String },
    /// The customer must authenticate (3-D Secure); `next_action` says how
    /// (contract §12). The outcome follows in a provider notification.
    RequiresAction { reference: String, next_action: serde_json::Value },
    /// No answer payd can read, although the call may have been carried
    /// out (a timeout, a connection lost after sending, a 5xx): the money
    /// may have moved. Retried with the same idempotency key, then asked
    /// about; never a failure.
    Unknown { code: FailureCode, message: String },
}

impl ProviderOutcome {
    /// The outcome of a call the provider may have carried out without
    /// payd learning it.
    pub fn unknown(code: FailureCode, message: impl Into<String>) -> Self {
        Self::Unknown { code, message: message.into() }
    }
}

/// What the provider says of an earlier call with an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inquiry {
    /// It was received: what it answers now (as the call would have).
    Answered(ProviderOutcome),
    /// It was never received: nothing was done.
    NotReceived,
    /// The provider could not tell (or cannot be asked).
    Unknown(String),
}

/// How long `pm_test_async` takes to settle.
pub const SANDBOX_ASYNC_DELAY: Duration = Duration::from_secs(1);

/// A payment provider: one module each (the sandbox, HTTP gateways,
/// Stripe). A new provider implements this trait and is registered in
/// [`Providers::new`]; the worker, the inquiry and the state machine are
/// the same for all of them.
pub trait Provider: Send + Sync {
    /// Makes the call; never an error: every failure is an outcome, and a
    /// call whose effect payd cannot learn is [`ProviderOutcome::Unknown`].
    fn call<'a>(&'a self, req: &'a ProviderRequest) -> BoxFuture<'a, ProviderOutcome>;

    /// What became of an earlier call with `req`'s idempotency key.
    fn inquire<'a>(&'a self, req: &'a ProviderRequest) -> BoxFuture<'a, Inquiry>;

    /// True when it takes payments in this mode.
    fn serves(&self, livemode: bool) -> bool {
        let _ = livemode;
        true
    }

    /// True when the provider needs the merchant's own account
    /// (`/v1/provider_accounts`) rather than deployment-wide settings.
    fn needs_account(&self) -> bool {
        false
    }
}

/// The providers this process can call, by name.
#[derive(Clone)]
pub struct Providers {
    by_name: Arc<HashMap<String, Arc<dyn Provider>>>,
}

impl Providers {
    /// The configured providers. `api_url` is this process's API base
    /// (`http://host:port`), where the sandbox posts its notifications unless
    /// `providers.sandbox.notify_url` says otherwise.
    pub fn new(pool: PgPool, settings: &Settings, api_url: Option<&str>) -> Self {
        let sandbox = settings.providers.get("sandbox");
        let notify_url = match sandbox.map(|s| s.notify_url.as_str()) {
            Some(url) if !url.is_empty() => url.to_owned(),
            _ => {
                let base = api_url.map_or_else(|| format!("http://{}", settings.http.listen), str::to_owned);
                format!("{base}/v1/provider_notifications/sandbox")
            }
        };
        let secret = sandbox.map_or_else(String::new, |s| s.secret.clone());
        let mut by_name: HashMap<String, Arc<dyn Provider>> = HashMap::new();
        let sandbox = Sandbox::new(pool.clone(), notify_url, secret, SANDBOX_ASYNC_DELAY);
        by_name.insert("sandbox".into(), Arc::new(sandbox));
        match Stripe::new(pool, settings) {
            Ok(stripe) => {
                by_name.insert(stripe::NAME.into(), Arc::new(stripe));
            }
            Err(e) => tracing::error!(error = %e, "cannot build the Stripe client; provider disabled"),
        }
        for (name, s) in settings.providers.iter().filter(|(name, _)| !BUILT_IN.contains(&name.as_str())) {
            match HttpGateway::new(s) {
                Ok(g) => {
                    by_name.insert(name.clone(), Arc::new(g));
                }
                Err(e) => {
                    tracing::error!(provider = %name, error = %e, "cannot build the gateway client; provider disabled");
                }
            }
        }
        Self { by_name: Arc::new(by_name) }
    }

    fn get(&self, provider: &str) -> Option<&dyn Provider> {
        self.by_name.get(provider).map(|p| p.as_ref())
    }

    /// True when payments can be sent to `provider` in this mode: the
    /// sandbox serves test mode only (contract §5).
    pub fn serves(&self, provider: &str, livemode: bool) -> bool {
        self.get(provider).is_some_and(|p| p.serves(livemode))
    }

    /// True when `provider` charges on the merchant's own account.
    pub fn needs_account(&self, provider: &str) -> bool {
        self.get(provider).is_some_and(Provider::needs_account)
    }

    /// Asks the named provider what became of the call `req` stands for.
    pub async fn inquire(&self, provider: &str, req: &ProviderRequest) -> Inquiry {
        match self.get(provider) {
            Some(p) => p.inquire(req).await,
            None => Inquiry::Unknown(format!("provider {provider} is not configured")),
        }
    }

    /// Calls the named provider.
    pub async fn call(&self, provider: &str, req: &ProviderRequest) -> ProviderOutcome {
        match self.get(provider) {
            Some(p) => p.call(req).await,
            None => ProviderOutcome::Failed {
                code: FailureCode::ProviderUnavailable,
                message: format!("provider {provider} is not configured"),
            },
        }
    }
}

/// True when `provider` captures an authorization once and releases what
/// was not captured (Stripe): after its first capture nothing is
/// capturable. Others take several partial captures (contract §4).
pub fn captures_once(provider: &str) -> bool {
    provider == stripe::NAME
}

/// Names under `[providers.*]` that configure a built-in provider rather
/// than an HTTP gateway.
pub const BUILT_IN: [&str; 2] = ["sandbox", stripe::NAME];
