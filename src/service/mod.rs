//! The use cases: parse a command, check it against the state machine, and
//! commit its state, events and outbox messages in one transaction. HTTP
//! handlers (and, later, the AMQP command consumer) are thin callers of these,
//! so no rule exists twice.

pub mod attempts;
pub mod details;
pub mod lifecycle;
pub mod notifications;
pub mod params;
pub mod payment_methods;
pub mod payments;
pub mod wait;
pub mod webhooks;

use std::sync::Arc;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::config::Settings;
use crate::db;
use crate::domain::MerchantId;
use crate::error::ApiError;
use crate::provider::Providers;

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
    pub intake: crate::db::group_commit::Intake,
}

impl Ctx {
    /// The use cases' context; starts the group-commit writer for creates,
    /// so call it inside the runtime.
    pub fn new(db: PgPool, providers: Providers, settings: Arc<Settings>) -> Self {
        let intake = crate::db::group_commit::Intake::start(db.clone(), crate::queue::messages::ATTEMPTS_QUEUE);
        Self { db, providers, settings, intake }
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

/// Longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// A checked `Idempotency-Key` bound to the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: Vec<u8>,
}

impl IdempotencyKey {
    /// Checks the key and fingerprints `operation` (method and path) with `body`.
    pub fn new(key: &str, operation: &str, body: &Value) -> Result<Self, ApiError> {
        if key.is_empty() || key.chars().count() > IDEMPOTENCY_KEY_MAX {
            return Err(ApiError::new(
                400,
                "idempotency_key_invalid",
                format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters"),
            ));
        }
        Ok(Self { key: key.to_owned(), fingerprint: db::idempotency::fingerprint(operation, body) })
    }

    /// The stored answer to replay, if this key was used before.
    async fn replay(&self, conn: &mut PgConnection, merchant: &MerchantId) -> Result<Option<Outcome>, ApiError> {
        answer(db::idempotency::claim(conn, merchant, &self.key, &self.fingerprint).await?)
    }

    /// [`Self::replay`] holding nothing afterwards (see [`db::idempotency::peek`]).
    pub(crate) async fn peek(&self, ctx: &Ctx, merchant: &MerchantId) -> Result<Option<Outcome>, ApiError> {
        let mut conn = ctx.db.acquire().await?;
        answer(db::idempotency::peek(&mut conn, merchant, &self.key, &self.fingerprint).await?)
    }

    /// The record the group commit stores with a create.
    pub(crate) fn record(&self) -> db::intake::KeyRecord {
        db::intake::KeyRecord { key: self.key.clone(), fingerprint: self.fingerprint.clone() }
    }

    /// Stores the answer, in the transaction of its effects.
    async fn store(&self, conn: &mut PgConnection, merchant: &MerchantId, outcome: &Outcome) -> Result<(), ApiError> {
        if db::idempotency::store(conn, merchant, &self.key, &self.fingerprint, outcome.status, &outcome.body).await? {
            Ok(())
        } else {
            Err(in_flight())
        }
    }
}

/// 409 `idempotency_key_in_use`.
fn in_flight() -> ApiError {
    ApiError::new(409, "idempotency_key_in_use", "a request with this Idempotency-Key is still being processed")
}

/// What a key's state means for its request: nothing stored yet, an answer
/// to replay, or a refusal.
fn answer(claim: db::idempotency::Claim) -> Result<Option<Outcome>, ApiError> {
    use db::idempotency::Claim;
    match claim {
        Claim::Fresh => Ok(None),
        Claim::Replay { status, body } => Ok(Some(Outcome { status, body })),
        Claim::Mismatch => {
            Err(ApiError::new(409, "idempotency_key_reused", "this Idempotency-Key was used with a different request"))
        }
        Claim::InFlight => Err(in_flight()),
    }
}

/// Replays a keyed request's first answer, if there is one.
async fn replay(
    conn: &mut PgConnection,
    merchant: &MerchantId,
    key: Option<&IdempotencyKey>,
) -> Result<Option<Outcome>, ApiError> {
    match key {
        Some(k) => k.replay(conn, merchant).await,
        None => Ok(None),
    }
}

/// Stores a keyed request's answer.
async fn remember(
    conn: &mut PgConnection,
    merchant: &MerchantId,
    key: Option<&IdempotencyKey>,
    outcome: &Outcome,
) -> Result<(), ApiError> {
    match key {
        Some(k) => k.store(conn, merchant, outcome).await,
        None => Ok(()),
    }
}

/// How a change begins: the first answer again for a repeated
/// Idempotency-Key, or a fresh transaction whose payment changes the audit
/// log records as `action` by the scope's actor.
enum Begun {
    Replay(Outcome),
    Fresh(db::Tx<'static>),
}

async fn begin(
    ctx: &Ctx,
    scope: &db::payments::Scope,
    key: Option<&IdempotencyKey>,
    action: Option<&str>,
) -> Result<Begun, ApiError> {
    let mut tx = ctx.db.begin().await?;
    if let Some(replayed) = replay(&mut tx, &scope.merchant_id, key).await? {
        return Ok(Begun::Replay(replayed));
    }
    // `None`: the caller names the actor in its first statement (a round trip saved).
    if let Some(action) = action {
        db::audit::act(&mut tx, &scope.actor, action).await?;
    }
    Ok(Begun::Fresh(tx))
}

/// Stores a keyed request's answer with its effects and commits them.
async fn finish(
    ctx: &Ctx,
    mut tx: db::Tx<'static>,
    scope: &db::payments::Scope,
    key: Option<&IdempotencyKey>,
    outcome: Outcome,
) -> Result<Outcome, ApiError> {
    remember(&mut tx, &scope.merchant_id, key, &outcome).await?;
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

/// `{"object":"list", …}`
pub fn list_body<T: serde::Serialize>(data: &[T], offset: i64, total: i64) -> Result<Value, ApiError> {
    Ok(serde_json::json!({
        "object": "list",
        "data": to_json(&data)?,
        "has_more": offset + (data.len() as i64) < total,
        "total_count": total,
    }))
}
