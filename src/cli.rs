//! The command line (contract §8). Output meant for programs is JSON on
//! stdout; logs go to stderr.

mod ops;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::app::{self, Role};
use crate::config::Settings;
use crate::db;
use crate::domain::KeyKind;
use crate::domain::MerchantId;
use crate::provider::Providers;
use crate::service::{self, Ctx};

/// payd: a webhook-driven asynchronous payment worker.
#[derive(Debug, Parser)]
#[command(name = "payd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run roles (all of them without --role); applies migrations first.
    Serve {
        /// A role to run; repeat for several.
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
    },
    /// Apply migrations and exit.
    Migrate,
    /// Merchants.
    Merchants {
        /// What to do with merchants.
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// API keys.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Provider attempts and scheduled retries (operators).
    Attempts {
        /// What to do with attempts.
        #[command(subcommand)]
        command: ops::AttemptCommand,
    },
    /// Holds on scheduled attempts during a provider outage (operators).
    Holds {
        /// What to do with holds.
        #[command(subcommand)]
        command: ops::HoldCommand,
    },
    /// Stuck transactions whose outcome is unknown (operators).
    Transactions {
        /// What to do with transactions.
        #[command(subcommand)]
        command: ops::TransactionCommand,
    },
    /// Measure throughput and latency: starts payd on a fresh database, creates
    /// payments over HTTP and waits for their verified webhooks.
    Loadtest(crate::loadtest::LoadtestArgs),
}

/// `payd merchants …`
#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Create a merchant with test-mode keys.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
    },
}

/// `payd keys …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create keys for a merchant, or an operator key.
    Create {
        /// The merchant (mer_…).
        #[arg(long, required_unless_present = "ops", conflicts_with = "ops")]
        merchant: Option<String>,
        /// Live-mode keys instead of test-mode ones.
        #[arg(long, conflicts_with = "ops")]
        live: bool,
        /// An operator key (sk_ops_…).
        #[arg(long)]
        ops: bool,
    },
    /// Revoke any key: it answers 401 on every api process within a second.
    Revoke {
        /// The key's id (key_…).
        key_id: String,
    },
}

/// Runs a command to completion.
pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { roles } => serve(settings, &roles).await,
        Command::Migrate => app::migrate(&settings).await,
        Command::Merchants { command: MerchantCommand::Create { name } } => {
            let pool = ready_pool(&settings).await?;
            let m = db::keys::create_merchant(&pool, &name, None).await?;
            print_json(
                json!({"id": m.id, "name": name, "secret_key": m.secret_key, "publishable_key": m.publishable_key}),
            );
            Ok(())
        }
        Command::Keys { command: KeyCommand::Create { merchant, live, ops } } => {
            let pool = ready_pool(&settings).await?;
            let mut conn = pool.acquire().await?;
            if ops {
                let key = db::keys::generate_key(KeyKind::Ops, true);
                db::keys::insert_key(&mut conn, None, KeyKind::Ops, true, &key).await?;
                print_json(json!({"secret_key": key}));
                return Ok(());
            }
            let raw = merchant.unwrap_or_default();
            let id =
                MerchantId::parse(&raw).with_context(|| format!("--merchant: {raw:?} is not a merchant id (mer_…)"))?;
            anyhow::ensure!(db::keys::merchant_exists(&pool, &id).await?, "--merchant: no such merchant {id}");
            let secret = db::keys::generate_key(KeyKind::Secret, live);
            let publishable = db::keys::generate_key(KeyKind::Publishable, live);
            db::keys::insert_key(&mut conn, Some(&id), KeyKind::Secret, live, &secret).await?;
            db::keys::insert_key(&mut conn, Some(&id), KeyKind::Publishable, live, &publishable).await?;
            print_json(json!({"secret_key": secret, "publishable_key": publishable}));
            Ok(())
        }
        Command::Keys { command: KeyCommand::Revoke { key_id } } => {
            let pool = ready_pool(&settings).await?;
            let ctx = Ctx::new(pool.clone(), Providers::new(pool, &settings, None), Arc::new(settings));
            answer(service::keys::revoke_any(&ctx, &key_id).await)
        }
        Command::Attempts { command } => answer(ops::attempts(&operator_ctx(settings).await?, command).await),
        Command::Holds { command } => answer(ops::holds(&operator_ctx(settings).await?, command).await),
        Command::Transactions { command } => answer(ops::transactions(&operator_ctx(settings).await?, command).await),
        Command::Loadtest(args) => crate::loadtest::run(&settings, args).await,
    }
}

/// The use cases' context for an operator's command.
async fn operator_ctx(settings: Settings) -> anyhow::Result<Ctx> {
    let pool = ready_pool(&settings).await?;
    Ok(Ctx::new(pool.clone(), Providers::new(pool, &settings, None), Arc::new(settings)))
}

/// Prints a use case's answer (or its error body, then fails).
fn answer(result: Result<serde_json::Value, service::ApiError>) -> anyhow::Result<()> {
    match result {
        Ok(v) => {
            print_json(v);
            Ok(())
        }
        Err(e) => {
            print_json(e.body());
            anyhow::bail!("{}", e.message)
        }
    }
}

async fn ready_pool(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    app::migrate(settings).await?;
    Ok(db::pool(&settings.database)?)
}

fn print_json(v: serde_json::Value) {
    println!("{v}");
}

/// `payd serve`: runs until SIGTERM or Ctrl-C, then drains and returns.
async fn serve(settings: Settings, roles: &[Role]) -> anyhow::Result<()> {
    let running = app::start(settings, roles).await?;
    shutdown_signal().await;
    tracing::info!("shutdown requested; finishing work in hand");
    running.shutdown();
    if tokio::time::timeout(crate::http::DRAIN_TIMEOUT, running.wait()).await.is_err() {
        tracing::warn!("drain timed out; exiting with work left to redelivery");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
