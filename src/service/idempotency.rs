//! `Idempotency-Key` for the use cases: a checked key bound to the request
//! it came with (its operation and body), and what a repeat of it answers.
//! The operation is the method and concrete path of the route the request
//! matched (over AMQP, of the route its command stands for), so no handler
//! spells its own.

use serde_json::Value;
use sqlx::PgConnection;

use super::error::{ApiError, ErrorCode};
use super::{Ctx, Outcome};
use crate::db;
use crate::db::creates::KeyRecord;
use crate::domain::{KeyKind, Scope};

/// Longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// A checked `Idempotency-Key` bound to the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: Vec<u8>,
}

impl IdempotencyKey {
    /// Checks the key and fingerprints the request: `method` and `path` of
    /// the route it matched, with its `body`.
    pub fn new(key: &str, method: &str, path: &str, body: &Value) -> Result<Self, ApiError> {
        if key.is_empty() || key.chars().count() > IDEMPOTENCY_KEY_MAX {
            return Err(ApiError::new(
                400,
                ErrorCode::IdempotencyKeyInvalid,
                format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters"),
            ));
        }
        let operation = format!("{method} {path}");
        Ok(Self { key: key.to_owned(), fingerprint: db::idempotency::fingerprint(&operation, body) })
    }

    /// The key as stored (contract §11): scoped by mode and key kind within
    /// the merchant, so the same key sent with a test and a live key (or a
    /// publishable and a secret one) names two requests.
    fn stored(&self, scope: &Scope) -> String {
        let mode = if scope.livemode { "live" } else { "test" };
        let kind = scope.key_kind.map_or("system", KeyKind::as_str);
        format!("{mode}:{kind}:{}", self.key)
    }

    /// The stored answer to replay, if this key was used before; holds the
    /// key's lock for the rest of the transaction.
    pub(super) async fn replay(&self, conn: &mut PgConnection, scope: &Scope) -> Result<Option<Outcome>, ApiError> {
        let key = self.stored(scope);
        answer(db::idempotency::claim(conn, &scope.merchant_id, &key, &self.key, &self.fingerprint).await?)
    }

    /// [`Self::replay`] holding nothing afterwards (see [`db::idempotency::peek`]).
    pub(super) async fn peek(&self, ctx: &Ctx, scope: &Scope) -> Result<Option<Outcome>, ApiError> {
        let mut conn = ctx.db.acquire().await?;
        let key = self.stored(scope);
        answer(db::idempotency::peek(&mut conn, &scope.merchant_id, &key, &self.key, &self.fingerprint).await?)
    }

    /// The record the group commit stores with a create.
    pub(super) fn record(&self, scope: &Scope) -> KeyRecord {
        KeyRecord { key: self.stored(scope), fingerprint: self.fingerprint.clone() }
    }

    /// Stores the answer, in the transaction of its effects.
    pub(super) async fn store(
        &self,
        conn: &mut PgConnection,
        scope: &Scope,
        outcome: &Outcome,
    ) -> Result<(), ApiError> {
        let key = self.stored(scope);
        if db::idempotency::store(conn, &scope.merchant_id, &key, &self.fingerprint, outcome.status, &outcome.body)
            .await?
        {
            Ok(())
        } else {
            Err(in_flight())
        }
    }
}

/// 409 `idempotency_key_in_use`.
pub(super) fn in_flight() -> ApiError {
    ApiError::new(409, ErrorCode::IdempotencyKeyInUse, "a request with this Idempotency-Key is still being processed")
}

/// What a key's state means for its request: nothing stored yet, an answer
/// to replay, or a refusal.
fn answer(claim: db::idempotency::Claim) -> Result<Option<Outcome>, ApiError> {
    use db::idempotency::Claim;
    match claim {
        Claim::Fresh => Ok(None),
        Claim::Replay { status, body } => Ok(Some(Outcome { status, body })),
        Claim::Mismatch => Err(ApiError::new(
            409,
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request",
        )),
        Claim::InFlight => Err(in_flight()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_route_and_the_body() {
        let body = serde_json::json!({"amount": 5});
        let a = IdempotencyKey::new("k", "POST", "/v1/payments/pay_1/refund", &body).unwrap();
        let b = IdempotencyKey::new("k", "POST", "/v1/payments/pay_2/refund", &body).unwrap();
        let c =
            IdempotencyKey::new("k", "POST", "/v1/payments/pay_1/refund", &serde_json::json!({"amount": 6})).unwrap();
        let again = IdempotencyKey::new("k", "POST", "/v1/payments/pay_1/refund", &body).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.fingerprint, again.fingerprint);
        assert_eq!(
            IdempotencyKey::new("", "POST", "/v1/payments", &body).unwrap_err().code,
            ErrorCode::IdempotencyKeyInvalid
        );
        assert!(IdempotencyKey::new(&"k".repeat(256), "POST", "/v1/payments", &body).is_err());
    }
}
