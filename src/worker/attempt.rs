//! Running one attempt: claim it, call the provider with the transaction's
//! idempotency key, and commit attempt, transaction, payment and event in one
//! transaction. Every step is safe to repeat after a crash at any line.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use super::group_commit::{Batches, Charge, Recorded};
use crate::config::PaymentSettings;
use crate::db::attempts::{Claimed, ClaimedCall};
use crate::db::payments as store;
use crate::db::transactions::TransactionRow;
use crate::db::{attempts, notify, transactions as txns};
use crate::domain::{self, AttemptId, AttemptStatus, PaymentMethodId, SYSTEM_ACTOR};
use crate::faults::{CrashPoint, Faults};
use crate::provider::{Inquiry, Operation, ProviderOutcome, ProviderRequest, Providers};
use crate::service::outcomes::{self as outcome, Schedules};
use crate::service::payment_methods::is_expired;

/// Runs attempts for the worker role.
pub struct AttemptRunner {
    pool: PgPool,
    providers: Providers,
    provider_timeout: Duration,
    schedules: Schedules,
    pending_timeout: Duration,
    faults: Faults,
    batches: Batches,
}

impl AttemptRunner {
    /// A runner whose provider calls time out after `provider_timeout` and
    /// whose transient failures are retried on `retry_schedule`.
    pub fn new(pool: PgPool, providers: Providers, settings: &PaymentSettings, faults: Faults) -> Self {
        let batches = Batches::start(pool.clone(), settings.provider_timeout * 2, faults.clone());
        Self {
            batches,
            pool,
            providers,
            provider_timeout: settings.provider_timeout,
            schedules: Schedules::new(settings),
            pending_timeout: settings.pending_timeout,
            faults,
        }
    }

    /// Runs the attempt if it can still be claimed: [`Self::claim`], then
    /// [`Self::complete`]. `Ok` means nothing is left to do; `Err` means
    /// nothing was committed.
    pub async fn run(&self, id: &AttemptId) -> anyhow::Result<()> {
        match self.claim(id).await? {
            Some(call) => self.complete(call).await,
            None => Ok(()),
        }
    }

    /// Claims the attempt. `None`: it is not claimable (done, canceled, or
    /// running under another claim); `Err`: nothing was committed.
    ///
    /// Once claimed, the attempt no longer needs its work message: the
    /// claim's lease outlives the provider call, and if this process dies
    /// the scheduler hands the attempt back after it, and the provider
    /// answers the repeated call from its idempotency record. So the
    /// message is acked here, and a slow provider does not hold the
    /// consumer's prefetch.
    pub(crate) async fn claim(&self, id: &AttemptId) -> anyhow::Result<Option<ClaimedCall>> {
        let call = self.batches.claim(id).await?;
        if call.is_none() {
            tracing::debug!(attempt_id = %id, "attempt not claimable; nothing to do");
        }
        Ok(call)
    }

    /// Calls the provider for a claimed attempt and commits its outcome.
    /// `Err`: the outcome was not committed; the attempt stays claimed until
    /// its lease ends, and is then run again.
    #[tracing::instrument(name = "attempt", skip_all, fields(attempt_id = %call.claimed.id, payment_id = %call.claimed.payment_id))]
    pub(crate) async fn complete(&self, call: ClaimedCall) -> anyhow::Result<()> {
        let claimed_at = std::time::Instant::now();
        let claimed = call.claimed.clone();
        let id = &claimed.id;
        let operation = Operation::of(call.kind).context("transaction type without provider call")?;
        let charges = matches!(operation, Operation::Purchase | Operation::Authorize);
        // The method came with the claim, and a charge has no parent: most
        // calls need no more reads.
        let method = method_of(&call)?;
        let parent_reference = if charges {
            None
        } else {
            Box::pin(async {
                let mut conn = self.pool.acquire().await?;
                txns::charge_reference(&mut conn, &claimed.payment_id).await
            })
            .await?
        };
        let Method { token, expired, account, customer } = method;
        let txn = TransactionRow {
            id: claimed.transaction_id.clone(),
            payment_id: claimed.payment_id.clone(),
            kind: call.kind,
            amount: call.amount,
            currency: call.currency,
        };
        let request = ProviderRequest {
            idempotency_key: txn.id.to_string(),
            operation,
            token,
            amount: txn.amount,
            currency: txn.currency,
            parent_reference,
            payment_id: claimed.payment_id.to_string(),
            account,
            customer,
        };
        let started = std::time::Instant::now();
        let outcome = if expired && charges {
            // Declined before asking the provider, as the card's issuer would.
            ProviderOutcome::Failed {
                code: domain::FailureCode::ExpiredCard,
                message: "The payment method has expired.".into(),
            }
        } else if claimed.inquiry {
            Box::pin(self.inquire(&call.provider, &request)).await
        } else {
            match tokio::time::timeout(self.provider_timeout, Box::pin(self.providers.call(&call.provider, &request)))
                .await
            {
                Ok(outcome) => outcome,
                // The call may have reached the provider: unknown, not failed.
                Err(_) => ProviderOutcome::unknown(domain::FailureCode::Timeout, "the provider did not answer in time"),
            }
        };
        let kind = match &outcome {
            ProviderOutcome::Succeeded { .. } => "succeeded",
            ProviderOutcome::Pending { .. } => "pending",
            ProviderOutcome::RequiresAction { .. } => "requires_action",
            ProviderOutcome::Failed { code, .. } if code.is_transient() => "transient",
            ProviderOutcome::Failed { .. } => "declined",
            ProviderOutcome::Unknown { .. } => "unknown",
        };
        crate::observe::attempt(&call.provider, operation.as_str(), kind, started.elapsed());
        tracing::info!(payment_id = %claimed.payment_id, attempt_id = %id, operation = operation.as_str(), ?outcome, "provider answered");
        self.faults.crash_point(CrashPoint::WorkerAfterProviderCall);

        // Postgres may be briefly away or the pool busy: the outcome is
        // committed in place while the claim's lease lasts, not left for
        // the lease to end and the provider to be asked again.
        let mut pause = Duration::from_millis(100);
        loop {
            match Box::pin(self.commit(&claimed, &txn, operation, charges, &outcome)).await {
                Ok(()) => return Ok(()),
                Err(e) if claimed_at.elapsed() + pause < self.provider_timeout * 2 => {
                    tracing::warn!(attempt_id = %id, error = format!("{e:#}"), retry_in = ?pause, "worker: outcome not committed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Commits a provider's outcome, guarded by the claim (a lost claim
    /// writes nothing). Safe to repeat.
    async fn commit(
        &self,
        claimed: &Claimed,
        txn: &TransactionRow,
        operation: Operation,
        charges: bool,
        outcome: &ProviderOutcome,
    ) -> anyhow::Result<()> {
        let id = &claimed.id;
        // The common end of a charge goes with the next batch of outcomes.
        let final_charge = match outcome {
            ProviderOutcome::Succeeded { .. } => true,
            // A transient failure after an unknown outcome may still go to an
            // inquiry: that is decided with the transaction in hand, below.
            ProviderOutcome::Failed { code, .. } if code.is_transient() && !claimed.inquiry => false,
            ProviderOutcome::Failed { .. } => outcome::retry_delay(outcome, claimed, &self.schedules.retry).is_none(),
            ProviderOutcome::Pending { .. }
            | ProviderOutcome::RequiresAction { .. }
            | ProviderOutcome::Unknown { .. } => false,
        };
        if charges && final_charge {
            let charge = Charge { claimed: claimed.clone(), operation, amount: txn.amount, outcome: outcome.clone() };
            match self.batches.record(charge).await? {
                Recorded::Written | Recorded::ClaimLost => return Ok(()),
                Recorded::Alone => {}
            }
        }

        let mut tx = self.pool.begin().await?;
        // Lock order everywhere: payment, then attempt (no deadlock with cancels).
        let payment = store::lock_for_change(&mut tx, &claimed.payment_id, SYSTEM_ACTOR, "provider.outcome")
            .await?
            .context("payment vanished")?;
        let (status, code) = match outcome {
            ProviderOutcome::Succeeded { .. } => (AttemptStatus::Succeeded, None),
            ProviderOutcome::Failed { code, .. } | ProviderOutcome::Unknown { code, .. } => {
                (AttemptStatus::Failed, Some(*code))
            }
            ProviderOutcome::Pending { reference } | ProviderOutcome::RequiresAction { reference, .. } => {
                // The provider will notify; until then the attempt stays
                // running, leased for `pending_timeout` and then for each
                // step of the inquiry schedule, after which the scheduler
                // hands it back and the provider is asked again. After the
                // last step the attempt ends and the transaction is left
                // unknown for an operator (a notification still settles it).
                let Some(answers) = attempts::count_pending(&mut tx, claimed).await? else {
                    return Ok(());
                };
                let wait = match usize::try_from(answers).unwrap_or(usize::MAX) {
                    1 => Some(self.pending_timeout),
                    n => self.schedules.inquiry.get(n - 2).copied(),
                };
                if let ProviderOutcome::RequiresAction { next_action, .. } = &outcome {
                    outcome::require_action(&mut tx, &payment, reference, next_action).await?;
                }
                match wait {
                    Some(wait) => {
                        attempts::hold_pending(&mut tx, claimed, wait).await?;
                        txns::set_provider_reference(&mut tx, &txn.id, reference).await?;
                    }
                    None => {
                        attempts::finish(&mut tx, claimed, AttemptStatus::Failed, Some(domain::FailureCode::Timeout))
                            .await?;
                        txns::set_provider_reference(&mut tx, &txn.id, reference).await?;
                        txns::mark_unknown(&mut tx, &txn.id).await?;
                        tracing::warn!(
                            payment_id = %claimed.payment_id, transaction_id = %txn.id, answers,
                            "the provider still answers pending after the inquiry schedule; it waits for an operator"
                        );
                        crate::observe::unknown_outcome("left_for_operator");
                    }
                }
                tx.commit().await?;
                return Ok(());
            }
        };
        if !attempts::finish(&mut tx, claimed, status, code).await? {
            tracing::info!(attempt_id = %id, "claim lost to another worker; discarding this outcome");
            return Ok(());
        }
        outcome::record(&mut tx, &payment, txn, claimed, operation, outcome, &self.schedules).await?;
        self.faults.crash_point(CrashPoint::WorkerBeforeCommit);
        tx.commit().await?;
        notify::ring(&self.pool, notify::DELIVERIES);
        notify::ring(&self.pool, notify::OUTBOX);
        notify::ring_with(&self.pool, notify::PAYMENT_STATUS, payment.id.as_str());
        Ok(())
    }
}

impl AttemptRunner {
    /// An inquiry: what the provider says of the transaction's earlier
    /// calls, as the outcome of this attempt. Never received means nothing
    /// was done: a failure (the retries are used up). No answer is still
    /// unknown: the next inquiry, or an operator.
    async fn inquire(&self, provider: &str, request: &ProviderRequest) -> ProviderOutcome {
        crate::observe::unknown_outcome("inquired");
        let asked = tokio::time::timeout(self.provider_timeout, self.providers.inquire(provider, request)).await;
        match asked {
            Ok(Inquiry::Answered(outcome)) => {
                crate::observe::unknown_outcome("settled");
                outcome
            }
            Ok(Inquiry::NotReceived) => {
                crate::observe::unknown_outcome("settled");
                ProviderOutcome::Failed {
                    code: domain::FailureCode::ProviderUnavailable,
                    message: "the provider never received the call; nothing was charged".into(),
                }
            }
            Ok(Inquiry::Unknown(message)) => ProviderOutcome::unknown(domain::FailureCode::ProcessingError, message),
            Err(_) => ProviderOutcome::unknown(domain::FailureCode::Timeout, "the provider's inquiry timed out"),
        }
    }
}

/// What a call uses of the payment method.
struct Method {
    token: String,
    expired: bool,
    account: Option<crate::domain::ProviderAccountId>,
    customer: Option<String>,
}

/// The provider token of a payment method, whether it has expired, and the
/// merchant's provider account that issued it: a built-in sandbox method is
/// its own token; a stored one came with the claim (deleted or not: payments
/// made with it still complete).
fn method_of(call: &ClaimedCall) -> anyhow::Result<Method> {
    if PaymentMethodId::parse(&call.payment_method_id).is_none() {
        let token = call.payment_method_id.clone();
        return Ok(Method { token, expired: false, account: None, customer: None });
    }
    let m = &call.method;
    let token = m.method_token.clone().context("payment without its payment method")?;
    let today = time::OffsetDateTime::now_utc().date();
    let expired = m.method_expires_at.as_deref().is_some_and(|e| is_expired(e, today));
    Ok(Method { token, expired, account: m.method_account.clone(), customer: m.method_customer.clone() })
}
