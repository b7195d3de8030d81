//! Starting and stopping payd's roles in one process.
//!
//! Roles: `api` (HTTP), `worker` (consumes the work queue), `dispatcher`
//! (sends webhooks), `scheduler` (leases, due attempts, purges) and `relay`
//! (outbox → RabbitMQ). `api` and `worker` bring a relay along (they write
//! the outbox) and `worker` brings a scheduler, so the contract's three roles
//! are complete on their own. Any role may run in many processes at once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::domain::messages::{ATTEMPTS_QUEUE, COMMANDS_QUEUE};
use crate::faults::Faults;
use crate::http::AppState;
use crate::provider::Providers;
use crate::queue::{Amqp, consumer, relay};
use crate::service::Ctx;
use crate::service::wait::PaymentWatch;
use crate::worker::{AttemptRunner, CommandConsumer};
use crate::{db, dispatcher, http, scheduler, worker};

/// A role a process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API (with a relay).
    Api,
    /// The work-queue consumer (with a relay and a scheduler).
    Worker,
    /// The webhook dispatcher.
    Dispatcher,
    /// Leases, due attempts and purges.
    Scheduler,
    /// Outbox → RabbitMQ.
    Relay,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [Role::Api, Role::Worker, Role::Dispatcher, Role::Scheduler, Role::Relay];
}

/// Expands the requested roles with the ones they bring along; none = all.
pub fn expand(roles: &[Role]) -> BTreeSet<Role> {
    let mut set: BTreeSet<Role> = if roles.is_empty() { Role::ALL.into() } else { roles.iter().copied().collect() };
    if set.contains(&Role::Api) || set.contains(&Role::Worker) {
        set.insert(Role::Relay);
    }
    if set.contains(&Role::Worker) {
        set.insert(Role::Scheduler);
    }
    set
}

/// A started payd.
pub struct Running {
    /// The HTTP address, when the api role runs.
    pub addr: Option<SocketAddr>,
    ctx: Ctx,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    amqp: Arc<Amqp>,
    /// The command consumer's own connection (see [`start`]).
    command_amqp: Option<Arc<Amqp>>,
    /// The other pools than the context's, closed with it.
    pools: Vec<sqlx::PgPool>,
}

impl Running {
    /// Asks every role to stop taking work.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the roles to finish what they have in hand.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.amqp.close().await;
        if let Some(amqp) = &self.command_amqp {
            amqp.close().await;
        }
        self.ctx.db.close().await;
        for pool in &self.pools {
            pool.close().await;
        }
    }

    /// Shuts down and waits.
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}

/// Applies migrations, retrying while Postgres is not up yet.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    if settings.is_development() {
        (|| db::create_database_if_missing(&settings.database.url))
            .retry(startup_backoff())
            .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "database not reachable yet"))
            .await
            .context("creating the development database")?;
    }
    let pool = db::pool(&settings.database).context("database.url")?;
    (|| db::migrate(&pool))
        .retry(startup_backoff())
        .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "migrations failed; retrying"))
        .await
        .context("applying migrations")?;
    pool.close().await;
    Ok(())
}

fn startup_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(12)
        .with_jitter()
}

/// Migrates, then starts `roles` (all when empty).
pub async fn start(settings: Settings, roles: &[Role]) -> anyhow::Result<Running> {
    let roles = expand(roles);
    tracing::info!(env = %settings.env, ?roles, "starting payd");
    migrate(&settings).await?;
    let pool = db::pool(&settings.database).context("database.url")?;
    if settings.is_development()
        && let Some(id) = db::keys::ensure_dev_merchant(&pool).await?
    {
        tracing::info!(merchant_id = %id, key = db::keys::DEV_SECRET_KEY, "created the development test merchant");
    }
    let settings = Arc::new(settings);
    let amqp = Amqp::new(&settings.amqp);
    let faults = Faults::new(settings.faults.crash_at.clone());
    if roles.contains(&Role::Relay) || roles.contains(&Role::Worker) {
        // Declare the topology now, so producers find the exchange as soon as
        // payd is up. A broker that is down is not fatal: the relay and the
        // consumers connect (and declare) when it is back.
        match tokio::time::timeout(Duration::from_secs(5), amqp.check()).await {
            Ok(true) => {}
            _ => tracing::warn!("RabbitMQ is not reachable yet; will keep trying"),
        }
    }
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    crate::observe::install();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(5)) => crate::observe::upkeep(),
            }
        }
    });

    // Bind first: the sandbox posts its notifications to this address.
    let listener = if roles.contains(&Role::Api) {
        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("http.listen: cannot listen on {}", settings.http.listen))?;
        Some(listener)
    } else {
        None
    };
    let addr = listener.as_ref().map(tokio::net::TcpListener::local_addr).transpose()?;
    let providers = Providers::new(pool.clone(), &settings, addr.map(|a| format!("http://{a}")).as_deref());
    let ctx = Ctx::new(pool.clone(), providers.clone(), settings.clone());
    if roles.contains(&Role::Api) || roles.contains(&Role::Dispatcher) {
        // Endpoints made before secrets were sealed are sealed now; until
        // then their secrets are read as they are.
        match crate::service::webhooks::seal_plain_secrets(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(endpoints = n, "sealed webhook secrets stored in the clear"),
            Err(e) => tracing::warn!(error = %e.message, "could not seal webhook secrets stored in the clear"),
        }
    }
    if let Some(listener) = listener {
        tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
        let watch = PaymentWatch::start(pool.clone(), shutdown.clone());
        let state = AppState { ctx: ctx.clone(), amqp: amqp.clone(), watch, openapi: Arc::default() };
        let app = http::router(state);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            // The peer's address tells /metrics who asks.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    // The queue roles' statements must stay cheap whatever the statistics
    // say: they run on a pool whose sessions refuse whole-table plans.
    let queue_pool = db::queue_pool(&settings.database).context("database.url")?;
    let mut pools = vec![queue_pool.clone()];
    let mut command_amqp = None;
    if roles.contains(&Role::Relay) {
        tasks.spawn(relay::run(queue_pool.clone(), amqp.clone(), faults.clone(), shutdown.clone()));
    }
    if roles.contains(&Role::Worker) {
        let runner = AttemptRunner::new(queue_pool.clone(), providers.clone(), &settings.payments, faults.clone());
        let calls = Arc::new(tokio::sync::Semaphore::new(settings.payments.calls_in_flight));
        let attempts = Arc::new(worker::AttemptHandler { runner, amqp: amqp.clone(), calls });
        let prefetch = settings.amqp.prefetch;
        tasks.spawn(consumer::run(attempts, amqp.clone(), ATTEMPTS_QUEUE, prefetch, shutdown.clone()));
        // Commands come from producers payd does not control, and lapin
        // drops the whole connection on a message it cannot parse (a
        // property that is not UTF-8): their consumer gets a connection of
        // its own, so the attempts keep flowing meanwhile.
        let own = Amqp::new(&settings.amqp);
        let commands = Arc::new(CommandConsumer::new(ctx.clone(), own.clone(), faults.clone()));
        tasks.spawn(consumer::run(commands, own.clone(), COMMANDS_QUEUE, prefetch, shutdown.clone()));
        command_amqp = Some(own);
    }
    if roles.contains(&Role::Scheduler) {
        tasks.spawn(scheduler::run(queue_pool.clone(), settings.payments.requeue_after, shutdown.clone()));
        tasks.spawn(scheduler::retain(queue_pool.clone(), settings.retention.clone(), shutdown.clone()));
    }
    if roles.contains(&Role::Dispatcher) {
        // Claims and send records may be lost in a Postgres crash without
        // harm (a webhook is sent once more), so they skip the WAL flush wait.
        let dispatcher_pool = db::dispatcher_pool(&settings.database).context("database.url")?;
        pools.push(dispatcher_pool.clone());
        let secrets = ctx.secrets.clone();
        tasks.spawn(dispatcher::run(
            dispatcher_pool,
            settings.webhooks.clone(),
            secrets,
            faults.clone(),
            shutdown.clone(),
        ));
    }
    Ok(Running { addr, ctx, shutdown, tasks, amqp, command_amqp, pools })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_amqp_command_is_the_twin_of_a_served_route() {
        let doc = serde_json::to_value(http::openapi_document()).unwrap();
        for (kind, route) in crate::worker::commands::COMMANDS {
            assert!(doc["paths"][route]["post"].is_object(), "{kind}: POST {route} is not a route");
        }
    }

    #[test]
    fn roles_bring_their_helpers() {
        assert_eq!(expand(&[]), Role::ALL.into());
        assert_eq!(expand(&[Role::Api]), [Role::Api, Role::Relay].into());
        assert_eq!(expand(&[Role::Worker]), [Role::Worker, Role::Scheduler, Role::Relay].into());
        assert_eq!(expand(&[Role::Dispatcher]), [Role::Dispatcher].into());
    }
}
