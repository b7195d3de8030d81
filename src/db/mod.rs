//! PostgreSQL: the pool, migrations, and one module of queries per table
//! group. Every function that changes state takes a transaction so callers
//! can commit state, events and outbox messages together.

pub mod attempts;
pub mod audit;
pub mod batch;
pub mod charges;
pub mod dispatch;
pub mod events;
pub mod group_commit;
pub mod idempotency;
pub mod intake;
pub mod keys;
pub mod nodelay;
pub mod notify;
pub mod outbox;
pub mod payment_methods;
pub mod payments;
pub mod sandbox;
pub mod transactions;
pub mod webhooks;

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
