//! Internals for payd's own integration tests, benchmarks and fuzz
//! targets: setting up tenants, keys and endpoints without the API, reading
//! the sandbox's ledger, playing the worker or the scheduler by hand. Not
//! part of payd's API for users; nothing here is needed to run payd.

use std::time::Duration;

use sqlx::PgPool;

use crate::config::{PaymentSettings, Settings};
use crate::db;
use crate::domain::{AttemptId, EventType, PaymentId, Scope};
use crate::faults::Faults;
use crate::provider::Providers;
use crate::worker::AttemptRunner;

pub use crate::db::keys::{DEV_SECRET_KEY, NewMerchant};
pub use crate::db::sandbox::SandboxCharge;
pub use crate::domain::{KeyKind, MerchantId};
pub use crate::provider::notification::{SIGNATURE_HEADER, sign as sign_notification};

/// Creates a merchant with test-mode secret and publishable keys.
pub async fn create_merchant(pool: &PgPool, name: &str) -> Result<NewMerchant, sqlx::Error> {
    db::keys::create_merchant(pool, name, None).await
}

/// Creates a key of `kind` (for `merchant`, or an operator key without
/// one) in this mode; answers the key itself.
pub async fn add_key(
    pool: &PgPool,
    merchant: Option<&MerchantId>,
    kind: KeyKind,
    livemode: bool,
) -> Result<String, sqlx::Error> {
    let key = db::keys::generate_key(kind, livemode);
    db::keys::insert_key(&mut *pool.acquire().await?, merchant, kind, livemode, &key).await?;
    Ok(key)
}

/// Registers a test-mode webhook endpoint of `merchant` for `events` (`*`
/// for all) at `url`, skipping the API's address check; answers its secret.
pub async fn add_endpoint(
    pool: &PgPool,
    merchant: &MerchantId,
    url: String,
    events: &[&str],
) -> Result<String, sqlx::Error> {
    let secret = crate::webhooks::generate_secret();
    // Stored in the clear, as endpoints made before secrets were sealed
    // (payd seals them at start; until then they are read as they are).
    let new = db::webhooks::NewEndpoint {
        id: crate::domain::EndpointId::generate(),
        url,
        enabled_events: events.iter().map(|e| (*e).to_owned()).collect(),
        description: None,
        metadata: serde_json::json!({}),
        sealed_secret: secret.clone(),
        rate_limit: None,
    };
    let scope = Scope::system(merchant.clone(), false);
    // Benches and tests set up as many endpoints as they measure.
    db::webhooks::create(&mut *pool.acquire().await?, &scope, new, u32::MAX).await?;
    Ok(secret)
}

/// Records `n` `payment.succeeded` events for an existing payment (with a
/// delivery for each subscribed endpoint), `per_commit` to a transaction,
/// and wakes the dispatchers; answers the event ids.
pub async fn record_payment_events(
    pool: &PgPool,
    payment: &str,
    n: usize,
    per_commit: usize,
) -> Result<Vec<String>, sqlx::Error> {
    let id = PaymentId::parse(payment).ok_or_else(|| sqlx::Error::Protocol(format!("not a payment id: {payment}")))?;
    let mut conn = pool.acquire().await?;
    let row = db::payments::lock_by_id(&mut conn, &id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let scope = Scope::system(row.merchant_id.clone(), row.livemode);
    let payment = db::payments::view(&mut conn, row).await?;
    drop(conn);
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let mut tx = pool.begin().await?;
        let mut recorded = Vec::new();
        for _ in 0..per_commit.max(1).min(n - ids.len()) {
            recorded
                .push(db::events::record(&mut tx, &scope, EventType::PaymentSucceeded, &payment).await?.to_string());
        }
        tx.commit().await?;
        db::notify::ring_events(pool, recorded.iter().map(String::as_str));
        ids.extend(recorded);
    }
    Ok(ids)
}

/// Every idempotency key the sandbox saw on this database, oldest first.
pub async fn sandbox_calls(pool: &PgPool) -> Result<Vec<SandboxCharge>, sqlx::Error> {
    db::sandbox::calls(pool).await
}

/// Money the sandbox moved on this database: keys whose final outcome is a
/// success, oldest first.
pub async fn sandbox_charges(pool: &PgPool) -> Result<Vec<SandboxCharge>, sqlx::Error> {
    let all = db::sandbox::calls(pool).await?;
    Ok(all.into_iter().filter(|c| c.outcome.as_ref().is_some_and(|o| o["result"] == "succeeded")).collect())
}

/// What the group-commit writers of `stage` (`create`, `claim`, `outcome`,
/// `delivery`, `sandbox`) did on this database in this process: jobs handed
/// to them, batches, jobs in those batches.
pub fn group_commit_counts(pool: &PgPool, stage: &'static str) -> (u64, u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = db::group_commit::counts(pool, stage);
    (c.submitted.load(Relaxed), c.batches.load(Relaxed), c.jobs.load(Relaxed))
}

/// A connection with the queue roles' session settings (see
/// `db::queue_pool`), on the database at `url`.
async fn dispatcher_connection(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    sqlx::PgConnection::connect_with(&options.options(db::QUEUE_SESSION)).await
}

/// The median time of `runs` claims of up to `limit` due deliveries, each
/// rolled back, as the dispatcher runs them: what one claim costs at the
/// database's backlog.
pub async fn claim_cost(url: &str, limit: i64, runs: usize) -> Result<Duration, sqlx::Error> {
    use sqlx::Connection;
    let mut conn = dispatcher_connection(url).await?;
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let mut tx = conn.begin().await?;
        let started = std::time::Instant::now();
        db::dispatch::claim_due(&mut tx, limit, Duration::from_secs(60), 8, &[]).await?;
        took.push(started.elapsed());
        tx.rollback().await?;
    }
    took.sort();
    Ok(took[took.len() / 2])
}

/// How the queue roles' hot statements ran, once each, with their
/// sessions' settings (`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`, rolled
/// back): the dispatcher's claim, the relay's take, the scheduler's passes.
pub async fn hot_plans(url: &str) -> Result<Vec<(&'static str, serde_json::Value)>, sqlx::Error> {
    use sqlx::Connection;
    let mut conn = dispatcher_connection(url).await?;
    let mut tx = conn.begin().await?;
    let plans = db::plans::explain_hot(&mut tx).await?;
    tx.rollback().await?;
    Ok(plans)
}

/// One scheduler pass (leases, due attempts, and purges with `purge`);
/// answers how many attempts were enqueued.
pub async fn scheduler_tick(pool: &PgPool, requeue_after: Duration, purge: bool) -> anyhow::Result<usize> {
    crate::scheduler::tick(pool, requeue_after, purge).await
}

/// A worker the test drives: runs attempts when told, with the providers of
/// `settings` and the retry and timeout settings of `payments`.
pub struct TestWorker(AttemptRunner);

impl TestWorker {
    /// A worker on `pool`.
    pub fn new(pool: &PgPool, settings: &Settings, payments: &PaymentSettings) -> Self {
        let providers = Providers::new(pool.clone(), settings, None);
        Self(AttemptRunner::new(pool.clone(), providers, payments, Faults::default()))
    }

    /// Runs attempt `id` as a delivered work message would.
    pub async fn run(&self, id: &str) -> anyhow::Result<()> {
        let id = AttemptId::parse(id).ok_or_else(|| anyhow::anyhow!("not an attempt id: {id}"))?;
        self.0.run(&id).await
    }
}

/// Parses an AMQP command body as the command consumer does, down to the
/// checked fields of its data; a refusal answers its status and message.
pub fn parse_command(body: &[u8]) -> Result<(), (u16, String)> {
    let refused = |e: crate::service::ApiError| (e.status, e.message);
    let command = crate::worker::commands::parse_body(body).map_err(refused)?;
    match command.kind.as_str() {
        "payment.create" => {
            crate::service::payments::CreatePayment::parse(serde_json::Value::Object(command.data)).map_err(refused)?;
        }
        _ => {
            crate::worker::commands::take_payment_id(command.data).map_err(refused)?;
        }
    }
    Ok(())
}

/// One retention pass (contract §13) with `settings`, as the scheduler
/// runs it every minute; answers how many rows went.
pub async fn purge_old(pool: &PgPool, settings: &crate::config::RetentionSettings) -> Result<u64, sqlx::Error> {
    crate::scheduler::retention_pass(pool, settings, &tokio_util::sync::CancellationToken::new()).await
}
