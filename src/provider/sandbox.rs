//! The built-in `sandbox` provider: test-mode methods with fixed outcomes.
//! It keeps its own ledger keyed by idempotency key, standing for the
//! provider's database: the same key always answers the first outcome and
//! never charges twice, even across payd crashes.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use serde_json::Value;
use sqlx::PgPool;

use super::notification::{self, Notification};
use super::{Inquiry, Operation, ProviderOutcome, ProviderRequest};
use crate::db;
use crate::db::group_commit::GroupCommit;
use crate::domain::{Currency, FailureCode};
use crate::retry::Schedule;

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
    /// `pm_test_async`: answers pending; settles as succeeded after a delay
    /// and sends a signed notification.
    Async,
}

impl SandboxMethod {
    /// Parses a built-in test method id (`pm_test_success`).
    pub fn parse(id: &str) -> Option<Self> {
        Self::from_name(id.strip_prefix("pm_test_")?)
    }

    /// Parses a sandbox token: a built-in method id, or the same behaviour
    /// as a token for a stored payment method (`tok_success`, `tok_decline`, …).
    pub fn parse_token(token: &str) -> Option<Self> {
        Self::parse(token).or_else(|| Self::from_name(token.strip_prefix("tok_")?))
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "success" => Self::Success,
            "decline" => Self::Decline,
            "insufficient_funds" => Self::InsufficientFunds,
            "expired" => Self::Expired,
            "flaky" => Self::Flaky,
            "unavailable" => Self::Unavailable,
            "async" => Self::Async,
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
            Self::Async => ProviderOutcome::Pending { reference: reference("ch", key) },
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
    http: reqwest::Client,
    notify_url: Arc<str>,
    secret: Arc<str>,
    async_delay: Duration,
    /// Calls with a fixed outcome, recorded in shared statements (the
    /// sandbox costs payd's own Postgres, which a real provider does not).
    fixed: GroupCommit<FixedCall, Value>,
}

/// A call whose outcome is known before the ledger is asked.
struct FixedCall {
    key: String,
    operation: &'static str,
    token: String,
    amount: i64,
    currency: Currency,
    outcome: Value,
}

impl Sandbox {
    /// A sandbox keeping its ledger in `pool`, posting notifications signed
    /// with `secret` to `notify_url` once an async charge settles.
    pub fn new(pool: PgPool, notify_url: String, secret: String, async_delay: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        let fixed = GroupCommit::start("sandbox", pool.clone(), |pool, jobs: Vec<Arc<FixedCall>>| async move {
            let calls: Vec<db::sandbox::Call> = jobs
                .iter()
                .map(|j| db::sandbox::Call {
                    key: &j.key,
                    operation: j.operation,
                    payment_method_id: &j.token,
                    amount: j.amount,
                    currency: j.currency.code(),
                })
                .collect();
            let pairs: Vec<_> = calls.iter().zip(&jobs).map(|(c, j)| (c, &j.outcome)).collect();
            let mut conn = pool.acquire().await?;
            db::sandbox::call_once_all(&mut conn, &pairs).await
        });
        Self { pool, http, notify_url: notify_url.into(), secret: secret.into(), async_delay, fixed }
    }

    /// What its ledger says of the call with `req`'s idempotency key.
    pub async fn inquire(&self, req: &ProviderRequest) -> Inquiry {
        match db::sandbox::outcome_of(&self.pool, &req.idempotency_key).await {
            Ok(Some(Some(outcome))) => match serde_json::from_value(outcome) {
                Ok(outcome) => Inquiry::Answered(outcome),
                Err(e) => Inquiry::Unknown(format!("unreadable ledger entry: {e}")),
            },
            // Seen, but every call failed transiently: nothing was done.
            Ok(Some(None) | None) => Inquiry::NotReceived,
            Err(e) => {
                tracing::warn!(error = %e, "sandbox: the ledger could not be read");
                Inquiry::Unknown("the provider could not be asked".into())
            }
        }
    }

    /// Performs a call: computes the outcome, and records it unless the key
    /// was seen, in which case the first outcome is answered again.
    pub async fn call(&self, req: &ProviderRequest) -> ProviderOutcome {
        let Some(method) = SandboxMethod::parse_token(&req.token) else {
            return ProviderOutcome::Failed {
                code: FailureCode::CardDeclined,
                message: format!("unknown sandbox token {}", req.token),
            };
        };
        match self.ledger(req, method).await {
            Ok(outcome) => outcome,
            // The "provider" could not be reached: transient, retried with the same key.
            // (The cause is payd's own database: logged, never shown in `failure_message`.)
            Err(e) => {
                tracing::warn!(error = %e, "sandbox: the ledger could not be written");
                ProviderOutcome::Failed {
                    code: FailureCode::ProviderUnavailable,
                    message: "The provider is unavailable.".into(),
                }
            }
        }
    }

    async fn ledger(&self, req: &ProviderRequest, method: SandboxMethod) -> Result<ProviderOutcome, sqlx::Error> {
        // Methods whose every call ends the same way: count and record at once.
        let charge = matches!(req.operation, Operation::Purchase | Operation::Authorize);
        let fixed = match (charge, method) {
            (false, _) => Some(self.settled_outcome(req.operation, &req.idempotency_key)),
            (
                true,
                SandboxMethod::Success
                | SandboxMethod::Decline
                | SandboxMethod::InsufficientFunds
                | SandboxMethod::Expired,
            ) => Some(method.charge_outcome(&req.idempotency_key, 1)),
            _ => None,
        };
        if let Some(outcome) = fixed {
            let job = FixedCall {
                key: req.idempotency_key.clone(),
                operation: req.operation.as_str(),
                token: req.token.clone(),
                amount: req.amount,
                currency: req.currency,
                outcome: serde_json::to_value(&outcome).unwrap_or(Value::Null),
            };
            let stood_by = self.fixed.submit(Arc::new(job)).await?;
            return Ok(serde_json::from_value(stood_by).unwrap_or(outcome));
        }
        let mut conn = self.pool.acquire().await?;
        let call = db::sandbox::Call {
            key: &req.idempotency_key,
            operation: req.operation.as_str(),
            payment_method_id: &req.token,
            amount: req.amount,
            currency: req.currency.code(),
        };
        let (number, first, age) = db::sandbox::count_call(&mut conn, &call).await?;
        if let Some(first) = first.and_then(|v| serde_json::from_value(v).ok()) {
            return Ok(first);
        }
        let outcome = match req.operation {
            // An async charge has settled once its delay has passed: asked
            // again (payd's janitor), the sandbox tells the final outcome.
            _ if charge && method == SandboxMethod::Async && age >= self.async_delay.as_secs_f64() => {
                ProviderOutcome::Succeeded { reference: reference("ch", &req.idempotency_key) }
            }
            _ if charge && method == SandboxMethod::Async => {
                if number == 1 {
                    self.notify_later(req.idempotency_key.clone(), req.operation);
                }
                return Ok(method.charge_outcome(&req.idempotency_key, number));
            }
            _ if charge => method.charge_outcome(&req.idempotency_key, number),
            op => self.settled_outcome(op, &req.idempotency_key),
        };
        if matches!(&outcome, ProviderOutcome::Failed { code, .. } if code.is_transient()) {
            return Ok(outcome);
        }
        let json = serde_json::to_value(&outcome).unwrap_or(Value::Null);
        let stood_by = db::sandbox::settle(&mut conn, &req.idempotency_key, &json).await?;
        Ok(serde_json::from_value(stood_by).unwrap_or(outcome))
    }

    /// Captures, voids and refunds of a sandbox charge always work.
    fn settled_outcome(&self, op: Operation, key: &str) -> ProviderOutcome {
        let prefix = match op {
            Operation::Capture => "cap",
            Operation::Void => "void",
            Operation::Refund => "re",
            Operation::Purchase | Operation::Authorize => "ch",
        };
        ProviderOutcome::Succeeded { reference: reference(prefix, key) }
    }

    /// After the async delay: settle the charge as succeeded and tell payd,
    /// retrying the post a few times. If this process dies first, payd's
    /// janitor asks again and gets the settled outcome.
    fn notify_later(&self, key: String, operation: Operation) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.async_delay).await;
            let reference = reference("ch", &key);
            let outcome = ProviderOutcome::Succeeded { reference: reference.clone() };
            let settled = async {
                let mut conn = this.pool.acquire().await?;
                db::sandbox::settle(&mut conn, &key, &serde_json::to_value(&outcome).unwrap_or(Value::Null)).await
            };
            if let Err(e) = settled.await {
                tracing::warn!(error = %e, "sandbox: could not settle an async charge");
                return;
            }
            let note = Notification {
                id: format!("ntf_{}", uuid::Uuid::now_v7().simple()),
                kind: format!("{}.succeeded", operation.notification_name()),
                idempotency_key: key,
                reference: Some(reference),
                error_code: None,
                message: None,
            };
            let body = serde_json::to_vec(&note).unwrap_or_default();
            let send = || async {
                let signature =
                    notification::sign(&this.secret, time::OffsetDateTime::now_utc().unix_timestamp(), &body);
                let resp = this
                    .http
                    .post(this.notify_url.as_ref())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(notification::SIGNATURE_HEADER, signature)
                    .body(body.clone())
                    .send()
                    .await?;
                resp.error_for_status().map(|_| ())
            };
            let schedule = Schedule::new(
                &[
                    Duration::from_millis(200),
                    Duration::from_millis(500),
                    Duration::from_secs(1),
                    Duration::from_secs(2),
                ],
                0.2,
            );
            if let Err(e) = send.retry(schedule.backoff()).await {
                tracing::warn!(error = %e, url = %this.notify_url, "sandbox: notification not delivered; payd will ask again");
            }
        });
    }
}

impl super::Provider for Sandbox {
    fn call<'a>(&'a self, req: &'a ProviderRequest) -> futures_util::future::BoxFuture<'a, ProviderOutcome> {
        Box::pin(Sandbox::call(self, req))
    }

    fn inquire<'a>(&'a self, req: &'a ProviderRequest) -> futures_util::future::BoxFuture<'a, Inquiry> {
        Box::pin(Sandbox::inquire(self, req))
    }

    /// Test mode only (contract §5).
    fn serves(&self, livemode: bool) -> bool {
        !livemode
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
        assert_eq!(SandboxMethod::parse_token("tok_decline"), Some(SandboxMethod::Decline));
        assert_eq!(SandboxMethod::parse_token("pm_test_async"), Some(SandboxMethod::Async));
        assert_eq!(SandboxMethod::parse_token("tok_visa"), None);
    }

    #[test]
    fn flaky_succeeds_on_the_third_call_and_unavailable_never() {
        let flaky = SandboxMethod::parse("pm_test_flaky").unwrap();
        for call in [1, 2] {
            assert!(matches!(
                flaky.charge_outcome("txn_1", call),
                ProviderOutcome::Failed { code: FailureCode::ProcessingError, .. }
            ));
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
