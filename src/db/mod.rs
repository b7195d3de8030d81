//! PostgreSQL: the pool, migrations, and one module of queries per table
//! group. Every SQL statement of payd is in this module, behind a named
//! function; a function that changes state says in its guard (`WHERE status
//! = …`) which transition it makes, and takes a connection so callers can
//! commit state, events and outbox messages in one transaction.

pub(crate) mod attempt_list;
pub(crate) mod attempts;
pub(crate) mod audit;
pub(crate) mod bulk;
pub(crate) mod charges;
pub(crate) mod console_sessions;
pub(crate) mod console_views;
pub(crate) mod creates;
pub(crate) mod delivery_log;
pub(crate) mod dispatch;
pub(crate) mod event_feed;
pub(crate) mod events;
pub(crate) mod group_commit;
pub(crate) mod holds;
pub(crate) mod idempotency;
pub(crate) mod keys;
pub(crate) mod meta_events;
mod nodelay;
pub(crate) mod notifications;
pub(crate) mod notify;
pub(crate) mod operators;
pub(crate) mod outbox;
pub(crate) mod paging;
pub(crate) mod payment_changes;
pub(crate) mod payment_methods;
pub(crate) mod payments;
pub(crate) mod plans;
pub(crate) mod provider_accounts;
pub(crate) mod ratelimits;
pub(crate) mod recoveries;
pub(crate) mod refunds;
pub(crate) mod retention;
pub(crate) mod sandbox;
pub(crate) mod transactions;
pub(crate) mod webhooks;

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::DatabaseSettings;

/// A transaction on the pool.
pub type Tx<'a> = sqlx::Transaction<'a, Postgres>;

/// The embedded migrations in `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Connections are made lazily, so a Postgres that is down at
/// start (or restarts later) costs failed requests, not a crashed process.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.url.parse()?;
    Ok(options_with_nodelay(&options)
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(with_events(options.application_name("payd"), settings)))
}

/// The session setting that makes the `events` table's trigger write each
/// recorded event's AMQP copy to the outbox (`amqp.publish_events`).
pub(crate) const PUBLISH_EVENTS: &str = "payd.publish_events";

/// `options` with [`PUBLISH_EVENTS`] on when the settings ask for it.
fn with_events(options: PgConnectOptions, settings: &DatabaseSettings) -> PgConnectOptions {
    if settings.publish_events { options.options([(PUBLISH_EVENTS, "on")]) } else { options }
}

/// The pool of the queue roles: the worker's claims and outcomes, the
/// relay and the scheduler. Every statement they run finds rows by key or
/// walks an index in order, so their sessions refuse the plans that read a
/// table whole (sequential and bitmap scans, hash and merge joins): a
/// planner misled by missing or stale statistics (a fresh table, or a
/// backlog growing faster than autovacuum analyzes it, after an outage)
/// cannot pick one, and a statement's cost stays flat in the backlog. For
/// the same reason each statement is planned once per connection (a
/// generic plan) and never JIT-compiled (misjudged costs cross
/// `jit_above_cost`, and compiling cost more than the statement).
pub fn queue_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.url.parse()?;
    Ok(options_with_nodelay(&options)
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(with_events(options.application_name("payd-queue").options(QUEUE_SESSION), settings)))
}

/// The queue roles' session settings (see [`queue_pool`]).
pub(crate) const QUEUE_SESSION: [(&str, &str); 6] = [
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("plan_cache_mode", "force_generic_plan"),
    ("jit", "off"),
];

/// The dispatcher's pool: the queue roles' session settings (see
/// [`queue_pool`]), and commits that do not wait for the WAL flush: its
/// claims and send records are the only writes whose loss in a Postgres
/// crash is harmless by design (a lost one means the webhook is sent once
/// more, which at-least-once delivery allows). It does not ping a
/// connection before each use.
pub fn dispatcher_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.url.parse()?;
    let session = QUEUE_SESSION.iter().copied().chain([("synchronous_commit", "off")]);
    Ok(options_with_nodelay(&options)
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use: a round trip on every claim and record.
        // A connection that broke fails its statement instead, which the
        // dispatcher retries (the claim on its next pass, the send after
        // its lease).
        .test_before_acquire(false)
        .connect_lazy_with(with_events(options.application_name("payd-dispatcher").options(session), settings)))
}

/// Pool options that turn Nagle's algorithm off on each new connection
/// (see [`nodelay`]).
fn options_with_nodelay(options: &PgConnectOptions) -> PgPoolOptions {
    let port = options.get_port();
    PgPoolOptions::new().after_connect(move |_conn, _meta| {
        Box::pin(async move {
            nodelay::set_on_connections_to(port);
            Ok(())
        })
    })
}

/// Creates the database if it does not exist (development convenience).
pub async fn create_database_if_missing(url: &str) -> Result<(), sqlx::Error> {
    if !Postgres::database_exists(url).await? {
        Postgres::create_database(url).await?;
        tracing::info!("created database");
    }
    Ok(())
}

/// Applies pending migrations. Safe to run from several processes at once:
/// sqlx serialises them with an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A read-only transaction on one snapshot, so a page and its `total_count`
/// agree even while rows are being added.
pub async fn snapshot(pool: &PgPool) -> Result<Tx<'static>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}

/// True when the error is a unique-constraint violation on `constraint`.
pub fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint),
        _ => false,
    }
}

/// Which database `pool` is on (`host:port/name`), for what this process
/// keeps per database: the NOTIFY bells, the key cache, group-commit counts.
pub fn identity(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!("{}:{}/{}", o.get_host(), o.get_port(), o.get_database().unwrap_or_default())
}

/// True when the database answers (readiness).
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// Drops database `name` on the server of `admin`, closing its sessions
/// (the load generator's throw-away databases). `name` must be an
/// identifier payd made itself.
pub async fn drop_database(admin: &mut sqlx::PgConnection, name: &str) -> Result<(), sqlx::Error> {
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(sqlx::Error::Protocol(format!("not a database name payd made: {name:?}")));
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(admin).await?;
    Ok(())
}
