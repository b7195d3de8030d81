//! The use cases: parse a command, check it against the state machine, and
//! commit its state, events and outbox messages in one transaction. HTTP
//! handlers and the AMQP command consumer are thin callers of these, so no
//! rule exists twice. The one error type of this layer is [`ApiError`].

pub(crate) mod attempts;
pub(crate) mod auth;
pub(crate) mod console;
pub(crate) mod details;
pub(crate) mod error;
pub(crate) mod holds;
pub(crate) mod idempotency;
pub(crate) mod keys;
pub(crate) mod late;
pub(crate) mod lifecycle;
pub(crate) mod notifications;
pub(crate) mod outcomes;
pub(crate) mod params;
pub(crate) mod payment_methods;
pub(crate) mod payments;
pub(crate) mod provider_accounts;
pub(crate) mod ratelimit;
pub(crate) mod resolve;
pub(crate) mod stripe_events;
pub(crate) mod toolkit;
pub(crate) mod wait;
pub(crate) mod webhook_tools;
pub(crate) mod webhooks;

use std::sync::Arc;

use serde_json::Value;
use sqlx::PgPool;

use crate::config::Settings;
use crate::db;
use crate::db::creates::Creates;
use crate::domain::Scope;
use crate::provider::Providers;
pub(crate) use error::{ApiError, ErrorCode};

/// The objects the use cases answer, as the API shows (and describes) them.
pub(crate) mod objects {
    pub(crate) use crate::db::attempts::Attempt;
    pub(crate) use crate::db::audit::AuditEntry;
    pub(crate) use crate::db::delivery_log::DeliveryAttempt;
    pub(crate) use crate::db::events::Event;
    pub(crate) use crate::db::holds::Hold;
    pub(crate) use crate::db::keys::ApiKey;
    pub(crate) use crate::db::payment_methods::PaymentMethod;
    pub(crate) use crate::db::payments::Payment;
    pub(crate) use crate::db::provider_accounts::ProviderAccount;
    pub(crate) use crate::db::recoveries::Recovery;
    pub(crate) use crate::db::refunds::Refund;
    pub(crate) use crate::db::transactions::Transaction;
    pub(crate) use crate::db::webhooks::{Delivery, Endpoint};
}
pub(crate) use idempotency::IdempotencyKey;

/// What the use cases need: the database, the providers, the settings.
#[derive(Clone)]
pub struct Ctx {
    /// The pool.
    pub db: PgPool,
    /// Provider adapters (to resolve payment methods).
    pub providers: Providers,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Where creates are written, with those of concurrent requests.
    pub creates: Creates,
    /// Seals and opens secrets at rest (`secrets.master_key`).
    pub secrets: Arc<crate::secretbox::SecretBox>,
    /// The client of test sends, built on the first (one per process, as
    /// the dispatcher's: a client loads its TLS roots when built).
    pub(crate) test_sends: Arc<tokio::sync::OnceCell<crate::outbound::Outbound>>,
}

impl Ctx {
    /// The use cases' context; starts the group-commit writer for creates,
    /// so call it inside the runtime.
    pub fn new(db: PgPool, providers: Providers, settings: Arc<Settings>) -> Self {
        let creates = Creates::start(db.clone());
        let secrets = Arc::new(settings.secret_box());
        Self { db, providers, settings, creates, secrets, test_sends: Arc::default() }
    }

    /// True when the database answers (readiness).
    pub async fn database_answers(&self) -> bool {
        db::ping(&self.db).await
    }
}

/// A status and a JSON body: what an operation answers, and what an
/// idempotent replay answers again.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

/// How a change begins: the first answer again for a repeated
/// Idempotency-Key, or a fresh transaction whose payment changes the audit
/// log records as `action` by the scope's actor.
enum Begun {
    Replay(Outcome),
    Fresh(db::Tx<'static>),
}

async fn begin(ctx: &Ctx, scope: &Scope, key: Option<&IdempotencyKey>, action: &str) -> Result<Begun, ApiError> {
    let mut tx = ctx.db.begin().await?;
    if let Some(key) = key
        && let Some(replayed) = key.replay(&mut tx, scope).await?
    {
        return Ok(Begun::Replay(replayed));
    }
    db::audit::act(&mut tx, &scope.actor, action).await?;
    Ok(Begun::Fresh(tx))
}

/// Stores a keyed request's answer with its effects and commits them.
async fn finish(
    ctx: &Ctx,
    mut tx: db::Tx<'static>,
    scope: &Scope,
    key: Option<&IdempotencyKey>,
    outcome: Outcome,
) -> Result<Outcome, ApiError> {
    if let Some(key) = key {
        key.store(&mut tx, scope, &outcome).await?;
    }
    tx.commit().await?;
    // Whatever the change wrote for the relay and the dispatcher.
    db::notify::ring(&ctx.db, db::notify::OUTBOX);
    db::notify::ring(&ctx.db, db::notify::DELIVERIES);
    Ok(outcome)
}

/// Opens a change, or answers the replayed outcome from the enclosing function.
macro_rules! begin_or_replay {
    ($ctx:expr, $scope:expr, $key:expr, $action:expr) => {
        match $crate::service::begin($ctx, $scope, $key, $action).await? {
            $crate::service::Begun::Replay(outcome) => return Ok(outcome),
            $crate::service::Begun::Fresh(tx) => tx,
        }
    };
}
use begin_or_replay;

/// A JSON value of something serializable (our own types never fail).
fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// `{"object":"list", …}`; `has_more`: more follow in the page's direction.
pub fn list_body<T: serde::Serialize>(data: &[T], has_more: bool, total: i64) -> Result<Value, ApiError> {
    Ok(serde_json::json!({
        "object": "list",
        "data": to_json(&data)?,
        "has_more": has_more,
        "total_count": total,
    }))
}
