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
use crate::domain::FailureCode;

pub use gateway::HttpGateway;
pub use sandbox::{Sandbox, SandboxMethod};

/// What the provider is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Charge and capture at once.
    Purchase,
    /// Give money back.
    Refund,
}

impl Operation {
    /// The transaction type it settles.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Refund => "refund",
        }
    }

    /// From a transaction type.
    pub fn from_transaction_type(kind: &str) -> Option<Self> {
        match kind {
            "purchase" => Some(Self::Purchase),
            "refund" => Some(Self::Refund),
            _ => None,
        }
    }
}

/// One provider call.
#[derive(Clone, Debug)]
pub struct ProviderRequest {
    /// The same for every attempt of a transaction: the transaction id.
    pub idempotency_key: String,
    pub operation: Operation,
    pub payment_method_id: String,
    pub amount: i64,
    pub currency: String,
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
}

/// How long `pm_test_async` takes to settle.
pub const SANDBOX_ASYNC_DELAY: Duration = Duration::from_secs(1);

/// The providers this process can call.
#[derive(Clone)]
pub struct Providers {
    sandbox: Sandbox,
    gateways: Arc<HashMap<String, HttpGateway>>,
}

/// A payment method resolved for a new payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedMethod {
    pub provider: String,
    pub method: &'static str,
}

/// Splits `pm_<provider>_<token>` into provider and token.
fn gateway_token(payment_method_id: &str) -> Option<(&str, &str)> {
    let (name, token) = payment_method_id.strip_prefix("pm_")?.split_once('_')?;
    (!name.is_empty() && !token.is_empty() && name != "test").then_some((name, token))
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

    /// Resolves a payment method id in a mode; `None` = no such method.
    ///
    /// The sandbox's `pm_test_*` methods exist in test mode only (contract
    /// §5). Until stored payment methods exist, a gateway is addressed as
    /// `pm_<provider>_<token>`, in either mode.
    pub fn resolve(&self, payment_method_id: &str, livemode: bool) -> Option<ResolvedMethod> {
        if !livemode && SandboxMethod::parse(payment_method_id).is_some() {
            return Some(ResolvedMethod { provider: "sandbox".into(), method: "card" });
        }
        let (name, _) = gateway_token(payment_method_id)?;
        self.gateways.contains_key(name).then(|| ResolvedMethod { provider: name.to_owned(), method: "card" })
    }

    /// Calls the named provider.
    pub async fn call(&self, provider: &str, req: &ProviderRequest) -> ProviderOutcome {
        if provider == "sandbox" {
            return self.sandbox.call(req).await;
        }
        match (self.gateways.get(provider), gateway_token(&req.payment_method_id)) {
            (Some(gateway), Some((_, token))) => gateway.call(req, token).await,
            _ => ProviderOutcome::Failed {
                code: FailureCode::ProviderUnavailable,
                message: format!("provider {provider} is not configured"),
            },
        }
    }

    /// The sandbox, for tests that read its ledger.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }
}
