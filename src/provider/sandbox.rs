//! The built-in `sandbox` provider: test-mode methods with fixed outcomes.
//! It keeps its own ledger keyed by idempotency key, standing for the
//! provider's database: the same key always answers the first outcome and
//! never charges twice, even across payd crashes.

use serde_json::Value;
use sqlx::PgPool;

use super::{Operation, ProviderOutcome, ProviderRequest};
use crate::db;
use crate::domain::FailureCode;

/// The sandbox's test payment methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMethod {
    /// `pm_test_success`
    Success,
    /// `pm_test_decline`
    Decline,
    /// `pm_test_insufficient_funds`
    InsufficientFunds,
    /// `pm_test_expired`
    Expired,
}

impl SandboxMethod {
    /// Parses a test method id.
    pub fn parse(id: &str) -> Option<Self> {
        Some(match id {
            "pm_test_success" => Self::Success,
            "pm_test_decline" => Self::Decline,
            "pm_test_insufficient_funds" => Self::InsufficientFunds,
            "pm_test_expired" => Self::Expired,
            _ => return None,
        })
    }

    fn charge_outcome(self, key: &str) -> ProviderOutcome {
        let failed = |code: FailureCode, message: &str| ProviderOutcome::Failed { code, message: message.to_owned() };
        match self {
            Self::Success => ProviderOutcome::Succeeded { reference: reference("ch", key) },
            Self::Decline => failed(FailureCode::CardDeclined, "The card was declined."),
            Self::InsufficientFunds => failed(FailureCode::InsufficientFunds, "The card has insufficient funds."),
            Self::Expired => failed(FailureCode::ExpiredCard, "The card has expired."),
        }
    }
}

/// A stable provider reference derived from the idempotency key.
fn reference(prefix: &str, key: &str) -> String {
    let body = key.split_once('_').map_or(key, |(_, b)| b);
    format!("{prefix}_{body}")
}

/// The sandbox provider.
#[derive(Clone)]
pub struct Sandbox {
    pool: PgPool,
}

impl Sandbox {
    /// A sandbox keeping its ledger in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Performs a call: computes the outcome, and records it unless the key
    /// was seen, in which case the first outcome is answered again.
    pub async fn call(&self, req: &ProviderRequest) -> ProviderOutcome {
        let Some(method) = SandboxMethod::parse(&req.payment_method_id) else {
            return ProviderOutcome::Failed {
                code: FailureCode::CardDeclined,
                message: format!("unknown sandbox method {}", req.payment_method_id),
            };
        };
        let outcome = match req.operation {
            Operation::Purchase => method.charge_outcome(&req.idempotency_key),
            Operation::Refund => ProviderOutcome::Succeeded { reference: reference("re", &req.idempotency_key) },
        };
        let stored = async {
            let mut conn = self.pool.acquire().await?;
            let outcome_json = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            db::sandbox::record_or_replay(
                &mut conn,
                &req.idempotency_key,
                req.operation.as_str(),
                &req.payment_method_id,
                req.amount,
                &req.currency,
                &outcome_json,
            )
            .await
        };
        match stored.await {
            Ok(first) => serde_json::from_value(first).unwrap_or(outcome),
            // The "provider" could not be reached: transient, retried with the same key.
            Err(e) => ProviderOutcome::Failed { code: FailureCode::ProviderUnavailable, message: e.to_string() },
        }
    }

    /// The ledger, oldest first.
    pub async fn charges(&self) -> Result<Vec<db::sandbox::SandboxCharge>, sqlx::Error> {
        db::sandbox::all(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_methods_have_fixed_outcomes() {
        let key = "txn_0123";
        assert_eq!(
            SandboxMethod::parse("pm_test_success").unwrap().charge_outcome(key),
            ProviderOutcome::Succeeded { reference: "ch_0123".into() }
        );
        for (id, code) in [
            ("pm_test_decline", FailureCode::CardDeclined),
            ("pm_test_insufficient_funds", FailureCode::InsufficientFunds),
            ("pm_test_expired", FailureCode::ExpiredCard),
        ] {
            match SandboxMethod::parse(id).unwrap().charge_outcome(key) {
                ProviderOutcome::Failed { code: c, .. } => assert_eq!(c, code),
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(SandboxMethod::parse("pm_card_visa"), None);
    }
}
