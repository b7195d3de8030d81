//! Payment providers. A worker asks a provider to charge or refund with the
//! transaction id as idempotency key, so repeating a call whose outcome was
//! lost (timeout, crash) can never charge twice.

pub mod gateway;
pub mod notification;
pub mod sandbox;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::config::Settings;
use crate::domain::{Currency, FailureCode, TransactionKind};

pub use gateway::HttpGateway;
pub use sandbox::{Sandbox, SandboxMethod};

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

/// The providers this process can call.
#[derive(Clone)]
pub struct Providers {
    sandbox: Sandbox,
    gateways: Arc<HashMap<String, HttpGateway>>,
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
        let gateways = settings
            .providers
            .iter()
            .filter(|(name, _)| name.as_str() != "sandbox")
            .filter_map(|(name, s)| match HttpGateway::new(s) {
                Ok(g) => Some((name.clone(), g)),
                Err(e) => {
                    tracing::error!(provider = %name, error = %e, "cannot build the gateway client; provider disabled");
                    None
                }
            })
            .collect();
        Self { sandbox: Sandbox::new(pool, notify_url, secret, SANDBOX_ASYNC_DELAY), gateways: Arc::new(gateways) }
    }

    /// True when payments can be sent to `provider` in this mode: the
    /// sandbox serves test mode only (contract §5).
    pub fn serves(&self, provider: &str, livemode: bool) -> bool {
        match provider {
            "sandbox" => !livemode,
            name => self.gateways.contains_key(name),
        }
    }

    /// Asks the named provider what became of the call `req` stands for.
    pub async fn inquire(&self, provider: &str, req: &ProviderRequest) -> Inquiry {
        if provider == "sandbox" {
            return self.sandbox.inquire(req).await;
        }
        match self.gateways.get(provider) {
            Some(gateway) => gateway.inquire(req).await,
            None => Inquiry::Unknown(format!("provider {provider} is not configured")),
        }
    }

    /// Calls the named provider.
    pub async fn call(&self, provider: &str, req: &ProviderRequest) -> ProviderOutcome {
        if provider == "sandbox" {
            return self.sandbox.call(req).await;
        }
        match self.gateways.get(provider) {
            Some(gateway) => gateway.call(req).await,
            None => ProviderOutcome::Failed {
                code: FailureCode::ProviderUnavailable,
                message: format!("provider {provider} is not configured"),
            },
        }
    }
}
