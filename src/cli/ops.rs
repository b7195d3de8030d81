//! Operators' commands (`payd attempts …`, `payd holds …`, `payd
//! transactions …`; contract §4 and §14): each one is the HTTP route's use
//! case, called as an operator key would call it, and prints its answer as
//! JSON. The audit log's actor is `cli:<login>` (the `USER` of the shell).

use std::collections::HashMap;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::domain::Viewer;
use crate::service::{self, ApiError, Ctx};

/// `payd attempts …`
#[derive(Debug, Subcommand)]
pub enum AttemptCommand {
    /// List attempts of every merchant, newest first.
    List {
        /// scheduled, running, succeeded, failed, canceled or held.
        #[arg(long)]
        status: Option<String>,
        /// Only this payment's attempts (pay_…).
        #[arg(long)]
        payment: Option<String>,
        /// Only this merchant's attempts (mer_…).
        #[arg(long)]
        merchant: Option<String>,
        /// At most this many (1–100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Cancel a scheduled attempt: it never runs, and its payment fails with retry_canceled.
    Cancel {
        /// The attempt (att_…).
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a scheduled attempt now.
    RetryNow {
        /// The attempt (att_…).
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move a scheduled attempt to another time.
    Reschedule {
        /// The attempt (att_…).
        id: String,
        /// When, RFC 3339 (at most 90 days ahead).
        #[arg(long)]
        at: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel every matching scheduled attempt; their payments fail with retry_canceled.
    BulkCancel {
        /// Only this merchant's (mer_…).
        #[arg(long)]
        merchant: Option<String>,
        /// Only payments with this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only retries of calls that failed with this code.
        #[arg(long)]
        error_code: Option<String>,
        /// Only attempts due before this time (RFC 3339).
        #[arg(long)]
        scheduled_before: Option<String>,
        /// Only attempts due after this time (RFC 3339).
        #[arg(long)]
        scheduled_after: Option<String>,
        /// Why: the payments' failure_message.
        #[arg(long)]
        reason: String,
        /// Count only; cancel nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `payd holds …`
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Hold matching scheduled attempts, and every matching one that comes due.
    Create {
        /// Only payments with this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only this merchant's (mer_…).
        #[arg(long)]
        merchant: Option<String>,
        /// Only retries of calls that failed with this code.
        #[arg(long)]
        error_code: Option<String>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Release a hold: its attempts are scheduled again, spread over --over.
    Release {
        /// The hold (hold_…).
        id: String,
        /// The window, e.g. 30s, 10m, 2h.
        #[arg(long, default_value = "10m")]
        over: String,
    },
    /// List holds, newest first.
    List {
        /// active or released.
        #[arg(long)]
        status: Option<String>,
    },
}

/// `payd transactions …`
#[derive(Debug, Subcommand)]
pub enum TransactionCommand {
    /// List transactions whose outcome is unknown, the longest stuck first.
    List {
        /// At most this many (1–100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Settle an unknown transaction (and its payment) by your word.
    Resolve {
        /// The transaction (txn_…).
        id: String,
        /// succeeded or failed.
        #[arg(long)]
        status: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// The provider's reference of the charge.
        #[arg(long)]
        provider_reference: Option<String>,
    },
}

/// The audit log's actor of a command.
fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()))
}

/// `payd attempts …`
pub async fn attempts(ctx: &Ctx, command: AttemptCommand) -> Result<Value, ApiError> {
    let (ops, actor) = (Viewer::Operator, actor());
    match command {
        AttemptCommand::List { status, payment, merchant, limit, offset } => {
            let mut q =
                HashMap::from([("limit".to_owned(), limit.to_string()), ("offset".to_owned(), offset.to_string())]);
            q.extend(status.map(|v| ("status".to_owned(), v)));
            q.extend(payment.map(|v| ("payment_id".to_owned(), v)));
            q.extend(merchant.map(|v| ("merchant_id".to_owned(), v)));
            service::attempts::list(ctx, &ops, q).await
        }
        AttemptCommand::Cancel { id, reason } => {
            service::attempts::cancel(ctx, &ops, &actor, &id, json!({ "reason": reason })).await
        }
        AttemptCommand::RetryNow { id, reason } => {
            service::toolkit::retry_now(ctx, &ops, &actor, &id, json!({ "reason": reason })).await
        }
        AttemptCommand::Reschedule { id, at, reason } => {
            service::toolkit::reschedule(ctx, &ops, &actor, &id, json!({ "at": at, "reason": reason })).await
        }
        AttemptCommand::BulkCancel {
            merchant,
            provider,
            error_code,
            scheduled_before,
            scheduled_after,
            reason,
            dry_run,
        } => {
            let filter = json!({"merchant_id": merchant, "provider": provider, "error_code": error_code,
                "scheduled_before": scheduled_before, "scheduled_after": scheduled_after});
            let body = json!({"filter": filter, "reason": reason, "dry_run": dry_run});
            service::toolkit::bulk_cancel(ctx, &ops, &actor, body).await
        }
    }
}

/// `payd holds …`
pub async fn holds(ctx: &Ctx, command: HoldCommand) -> Result<Value, ApiError> {
    let (ops, actor) = (Viewer::Operator, actor());
    match command {
        HoldCommand::Create { provider, merchant, error_code, reason } => {
            let body =
                json!({"provider": provider, "merchant_id": merchant, "error_code": error_code, "reason": reason});
            service::holds::create(ctx, &ops, &actor, body).await
        }
        HoldCommand::Release { id, over } => {
            service::holds::release(ctx, &ops, &actor, &id, json!({ "over": over })).await
        }
        HoldCommand::List { status } => {
            let mut q = HashMap::from([("limit".to_owned(), "100".to_owned())]);
            q.extend(status.map(|v| ("status".to_owned(), v)));
            service::holds::list(ctx, &ops, q).await
        }
    }
}

/// `payd transactions …`
pub async fn transactions(ctx: &Ctx, command: TransactionCommand) -> Result<Value, ApiError> {
    let (ops, actor) = (Viewer::Operator, actor());
    match command {
        TransactionCommand::List { limit } => {
            let q = HashMap::from([("limit".to_owned(), limit.to_string()), ("status".to_owned(), "unknown".into())]);
            service::resolve::list(ctx, &ops, q).await
        }
        TransactionCommand::Resolve { id, status, reason, provider_reference } => {
            let body = json!({"status": status, "reason": reason, "provider_reference": provider_reference});
            service::resolve::resolve(ctx, &ops, &actor, &id, body).await
        }
    }
}
