//! The worker's stages of the [group commit](crate::db::group_commit)
//! (`claim` and `outcome`): the attempts that concurrently delivered
//! messages ask for are claimed by one statement, and the final outcomes of
//! their charges are recorded by one transaction.
//!
//! A charge outcome is the common end of a payment, and on its own it costs
//! PostgreSQL five statements and a commit: lock the payment, finish the
//! attempt, settle transaction and payment, record the event with its
//! deliveries. Batched, those are five statements and one commit for every
//! payment whose provider answered meanwhile. Anything rarer (retries,
//! pending answers, captures, refunds, voids) keeps its own transaction in
//! [`super::attempt`]. Each message is still acked only after its batch
//! committed, and every statement is guarded as before (the claim token,
//! the payment's status), so a crash at any point leaves what one attempt
//! at a time would.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::db::attempts::{self, Claimed, ClaimedCall};
use crate::db::charges::{self, Settled};
use crate::db::group_commit::GroupCommit;
use crate::db::payments::{self as store, Payment, PaymentRow};
use crate::db::{events, meta_events, notify};
use crate::domain::{AttemptId, AttemptStatus, FailureCode, PaymentId, SYSTEM_ACTOR, Scope, Transition};
use crate::faults::{CrashPoint, Faults};
use crate::provider::{Operation, ProviderOutcome};
use crate::service::outcomes;

/// A claim asked for: the attempt, and the token that will prove it.
struct Claim {
    id: AttemptId,
    token: Uuid,
}

/// A charge's final outcome to record.
#[derive(Debug)]
pub struct Charge {
    /// The attempt, as claimed.
    pub claimed: Claimed,
    /// `Purchase` or `Authorize`.
    pub operation: Operation,
    /// The charge's amount (an authorization makes it capturable).
    pub amount: i64,
    /// `Succeeded`, or `Failed` for good (no retry left or due).
    pub outcome: ProviderOutcome,
}

/// What became of a [`Charge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Committed: attempt, transaction, payment and event.
    Written,
    /// The claim was no longer current: another worker runs the attempt;
    /// nothing was written.
    ClaimLost,
    /// Not written: the caller records it in a transaction of its own.
    Alone,
}

/// The worker's batchers; cheap to clone.
#[derive(Clone, Debug)]
pub struct Batches {
    claims: GroupCommit<Claim, Option<ClaimedCall>>,
    charges: GroupCommit<Charge, Recorded>,
}

impl Batches {
    /// Starts the writer tasks on the current runtime; claims hold their
    /// attempt for `lease`.
    pub fn start(pool: PgPool, lease: Duration, faults: Faults) -> Self {
        let claims = GroupCommit::start("claim", pool.clone(), move |pool, jobs: Vec<Arc<Claim>>| async move {
            let mut conn = pool.acquire().await?;
            let asked: Vec<(&AttemptId, Uuid)> = jobs.iter().map(|c| (&c.id, c.token)).collect();
            let mut won: HashMap<Uuid, ClaimedCall> = attempts::claim_calls(&mut conn, &asked, lease)
                .await?
                .into_iter()
                .map(|c| (c.claimed.claim_token, c))
                .collect();
            Ok(jobs.iter().map(|c| won.remove(&c.token)).collect())
        });
        let charges = GroupCommit::start("outcome", pool, move |pool, jobs: Vec<Arc<Charge>>| {
            let faults = faults.clone();
            async move { write_charges(&pool, &jobs, &faults).await }
        });
        Self { claims, charges }
    }

    /// Claims the attempt if it can still be claimed, with the next batch of
    /// claims; answers what its provider call needs.
    pub async fn claim(&self, id: &AttemptId) -> Result<Option<ClaimedCall>, sqlx::Error> {
        self.claims.submit(Arc::new(Claim { id: id.clone(), token: Uuid::new_v4() })).await
    }

    /// Records a charge's final outcome with the next batch of outcomes.
    pub async fn record(&self, charge: Charge) -> Result<Recorded, sqlx::Error> {
        self.charges.submit(Arc::new(charge)).await
    }
}

/// One transaction for the batch: lock the payments (in id order), finish
/// the attempts whose claim is current, settle their transactions and
/// payments, record the events and deliveries.
async fn write_charges(pool: &PgPool, jobs: &[Arc<Charge>], faults: &Faults) -> Result<Vec<Recorded>, sqlx::Error> {
    let mut answers = vec![Recorded::Alone; jobs.len()];
    // One job per payment: a second one (which a lost claim could make)
    // is recorded alone, after this batch.
    let mut seen = HashSet::new();
    let batch: Vec<usize> = (0..jobs.len()).filter(|&i| seen.insert(&jobs[i].claimed.payment_id)).collect();
    let ids: Vec<&PaymentId> = batch.iter().map(|&i| &jobs[i].claimed.payment_id).collect();

    let mut tx = pool.begin().await?;
    let locked: HashMap<PaymentId, PaymentRow> =
        store::lock_all_for_change(&mut tx, &ids, SYSTEM_ACTOR, "provider.outcome")
            .await?
            .into_iter()
            .map(|row| (row.id.clone(), row))
            .collect();
    // A payment that vanished is left to the lone path, which reports it.
    let batch: Vec<usize> = batch.into_iter().filter(|&i| locked.contains_key(&jobs[i].claimed.payment_id)).collect();
    let done: Vec<(&Claimed, AttemptStatus, Option<FailureCode>)> = batch
        .iter()
        .map(|&i| {
            let (status, code) = outcomes::attempt_result(&jobs[i].outcome);
            (&jobs[i].claimed, status, code)
        })
        .collect();
    let finished: HashSet<AttemptId> = attempts::finish_all(&mut tx, &done).await?.into_iter().collect();

    let mut settled = Vec::new();
    let mut transitions: HashMap<&PaymentId, Transition> = HashMap::new();
    for &i in &batch {
        let job = &jobs[i];
        if !finished.contains(&job.claimed.id) {
            tracing::info!(attempt_id = %job.claimed.id, "claim lost to another worker; discarding this outcome");
            answers[i] = Recorded::ClaimLost;
            continue;
        }
        answers[i] = Recorded::Written;
        let payment = &locked[&job.claimed.payment_id];
        let Some((t, result)) = outcomes::charge_change(payment, job.operation, job.amount, &job.outcome) else {
            continue;
        };
        transitions.insert(&job.claimed.payment_id, t);
        settled.push(Settled {
            payment_id: &job.claimed.payment_id,
            transaction_id: &job.claimed.transaction_id,
            from: t.from,
            to: t.to,
            result,
        });
    }
    let rows = charges::settle_all(&mut tx, &settled).await?;
    // The payments were pending until now: they have no refunds to read.
    let views: Vec<(Scope, Transition, Payment)> = rows
        .into_iter()
        .filter_map(|row| {
            let t = *transitions.get(&row.id)?;
            Some((Scope::system(row.merchant_id.clone(), row.livemode), t, Payment::new(row, Vec::new())))
        })
        .collect();
    let recorded: Vec<_> = views.iter().map(|(scope, t, view)| (scope, t.event, view)).collect();
    let event_ids = events::record_all(&mut tx, &recorded).await?;
    // A charge that failed for good: its attempt's own event too (rare
    // beside successes, so one statement each).
    for &i in &batch {
        let job = &jobs[i];
        let Some(code) = outcomes::failure_code(&job.outcome) else { continue };
        let Some((scope, _, view)) = views.iter().find(|(_, _, v)| v.row.id == job.claimed.payment_id) else {
            continue;
        };
        meta_events::attempt_failed(&mut tx, scope, view, outcomes::attempt_json(&job.claimed, Some(code), None))
            .await?;
    }
    faults.crash_point(CrashPoint::WorkerBeforeCommit);
    tx.commit().await?;

    for (_, t, view) in &views {
        crate::observe::transition(t.from.as_str(), t.to.as_str());
        notify::ring_with(pool, notify::PAYMENT_STATUS, view.row.id.as_str());
    }
    notify::ring_events(pool, event_ids.iter().map(|id| id.as_str()));
    Ok(answers)
}
