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
    /// `pm_test_flaky`: two transient failures, then success.
    Flaky,
    /// `pm_test_unavailable`: every call fails transiently.
    Unavailable,
}

impl SandboxMethod {
    /// Parses a test method id.
    pub fn parse(id: &str) -> Option<Self> {
        Some(match id {
            "pm_test_success" => Self::Success,
            "pm_test_decline" => Self::Decline,
            "pm_test_insufficient_funds" => Self::InsufficientFunds,
            "pm_test_expired" => Self::Expired,
            "pm_test_flaky" => Self::Flaky,
            "pm_test_unavailable" => Self::Unavailable,
            _ => return None,
        })
    }

    /// The outcome of call number `call` (1-based) for a charge.
    fn charge_outcome(self, key: &str, call: i32) -> ProviderOutcome {
        let failed = |code: FailureCode, message: &str| ProviderOutcome::Failed { code, message: message.to_owned() };
        match self {
            Self::Success => ProviderOutcome::Succeeded { reference: reference("ch", key) },
            Self::Flaky if call > 2 => ProviderOutcome::Succeeded { reference: reference("ch", key) },
            Self::Flaky => failed(FailureCode::ProcessingError, "The provider had a temporary problem."),
            Self::Unavailable => failed(FailureCode::ProviderUnavailable, "The provider is unavailable."),
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
        match self.ledger(req, method).await {
            Ok(outcome) => outcome,
            // The "provider" could not be reached: transient, retried with the same key.
            Err(e) => ProviderOutcome::Failed { code: FailureCode::ProviderUnavailable, message: e.to_string() },
        }
    }

    async fn ledger(&self, req: &ProviderRequest, method: SandboxMethod) -> Result<ProviderOutcome, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let call = db::sandbox::Call {
            key: &req.idempotency_key,
            operation: req.operation.as_str(),
            payment_method_id: &req.payment_method_id,
            amount: req.amount,
            currency: &req.currency,
        };
        let (number, first) = db::sandbox::count_call(&mut conn, &call).await?;
        if let Some(first) = first.and_then(|v| serde_json::from_value(v).ok()) {
            return Ok(first);
        }
        let outcome = match req.operation {
            Operation::Purchase => method.charge_outcome(&req.idempotency_key, number),
            Operation::Refund => ProviderOutcome::Succeeded { reference: reference("re", &req.idempotency_key) },
        };
        if matches!(&outcome, ProviderOutcome::Failed { code, .. } if code.is_transient()) {
            return Ok(outcome);
        }
        let json = serde_json::to_value(&outcome).unwrap_or(Value::Null);
        let stood_by = db::sandbox::settle(&mut conn, &req.idempotency_key, &json).await?;
        Ok(serde_json::from_value(stood_by).unwrap_or(outcome))
    }

    /// Money the sandbox moved: keys whose final outcome is a success,
    /// oldest first, with how many calls each took.
    pub async fn charges(&self) -> Result<Vec<db::sandbox::SandboxCharge>, sqlx::Error> {
        let all = db::sandbox::calls(&self.pool).await?;
        Ok(all.into_iter().filter(|c| c.outcome.as_ref().is_some_and(|o| o["result"] == "succeeded")).collect())
    }

    /// Every key the sandbox saw, including failures, oldest first.
    pub async fn calls(&self) -> Result<Vec<db::sandbox::SandboxCharge>, sqlx::Error> {
        db::sandbox::calls(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_methods_have_fixed_outcomes() {
        let key = "txn_0123";
        assert_eq!(
            SandboxMethod::parse("pm_test_success").unwrap().charge_outcome(key, 1),
            ProviderOutcome::Succeeded { reference: "ch_0123".into() }
        );
        for (id, code) in [
            ("pm_test_decline", FailureCode::CardDeclined),
            ("pm_test_insufficient_funds", FailureCode::InsufficientFunds),
            ("pm_test_expired", FailureCode::ExpiredCard),
        ] {
            match SandboxMethod::parse(id).unwrap().charge_outcome(key, 1) {
                ProviderOutcome::Failed { code: c, .. } => assert_eq!(c, code),
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(SandboxMethod::parse("pm_card_visa"), None);
    }

    #[test]
    fn flaky_succeeds_on_the_third_call_and_unavailable_never() {
        let flaky = SandboxMethod::parse("pm_test_flaky").unwrap();
        for call in [1, 2] {
            assert!(matches!(flaky.charge_outcome("txn_1", call),
                ProviderOutcome::Failed { code: FailureCode::ProcessingError, .. }));
        }
        assert!(matches!(flaky.charge_outcome("txn_1", 3), ProviderOutcome::Succeeded { .. }));
        let down = SandboxMethod::parse("pm_test_unavailable").unwrap();
        for call in 1..10 {
            match down.charge_outcome("txn_1", call) {
                ProviderOutcome::Failed { code, .. } => assert!(code.is_transient()),
                other => panic!("{other:?}"),
            }
        }
    }
}
