//! PostgreSQL: the pool, migrations, and one module of queries per table
//! group. Every SQL statement of payd is in this module, behind a named
//! function; a function that changes state says in its guard (`WHERE status
//! = …`) which transition it makes, and takes a connection so callers can
//! commit state, events and outbox messages in one transaction.

pub(crate) mod attempts;
pub(crate) mod audit;
pub(crate) mod charges;
pub(crate) mod creates;
pub(crate) mod dispatch;
pub(crate) mod events;
pub(crate) mod group_commit;
pub(crate) mod idempotency;
pub(crate) mod keys;
mod nodelay;
pub(crate) mod notifications;
pub(crate) mod notify;
pub(crate) mod outbox;
pub(crate) mod payment_changes;
pub(crate) mod payment_methods;
pub(crate) mod payments;
pub(crate) mod refunds;
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
        .connect_lazy_with(options.application_name("payd")))
}

/// A pool whose commits do not wait for the WAL flush. Only for writes whose
/// loss in a Postgres crash is harmless by design: the dispatcher's claims and
/// send records (a lost one means the webhook is sent once more, which
/// at-least-once delivery allows).
pub fn relaxed_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.url.parse()?;
    Ok(options_with_nodelay(&options)
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.application_name("payd-dispatcher").options([("synchronous_commit", "off")])))
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
