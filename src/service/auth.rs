//! Authentication and what each key kind may do (contract §2), for every
//! entry point: HTTP requests and AMQP commands both present an
//! `Authorization`-style value and go through [`authenticate`], then ask
//! for the access they need.

use super::Ctx;
use super::error::ApiError;
use crate::db;
use crate::domain::{KeyKind, Principal, Scope, Viewer, bearer_key};

/// The key of `Bearer <key>`, looked up; 401 when the value is missing,
/// malformed, or names no live key. `missing` is the message for an absent
/// value (each entry point names its own header).
pub async fn authenticate(ctx: &Ctx, authorization: Option<&str>, missing: &str) -> Result<Principal, ApiError> {
    let raw = authorization.ok_or_else(|| ApiError::unauthenticated(missing.to_owned()))?;
    let key = bearer_key(raw).ok_or_else(|| {
        ApiError::unauthenticated("malformed authorization: use Bearer <key> (one space, at most 200 characters)")
    })?;
    db::keys::authenticate(&ctx.db, key).await?.ok_or_else(|| ApiError::unauthenticated("invalid API key"))
}

/// What a caller needs its key to allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Create payments: a merchant's secret or publishable key.
    CreatePayments,
    /// Every merchant operation: a merchant's secret key.
    Merchant,
}

/// The tenant a merchant key acts for, if its kind allows `access`.
pub fn scope(p: &Principal, access: Access) -> Result<Scope, ApiError> {
    if p.kind == KeyKind::Publishable && access == Access::Merchant {
        return Err(ApiError::forbidden("publishable keys may only create payments"));
    }
    match &p.merchant_id {
        Some(m) => Ok(Scope {
            merchant_id: m.clone(),
            livemode: p.livemode,
            actor: p.key_id.to_string(),
            key_kind: Some(p.kind),
        }),
        None => Err(ApiError::forbidden("operator keys cannot use merchant routes")),
    }
}

/// Who may read payments and attempts (and cancel attempts): an operator key
/// every merchant's, a merchant's secret key its own. Answers the viewer and
/// the actor for the audit log.
pub fn viewer(p: &Principal) -> Result<(Viewer, String), ApiError> {
    let actor = p.key_id.to_string();
    match p.kind {
        KeyKind::Ops => Ok((Viewer::Operator, actor)),
        KeyKind::Publishable => Err(ApiError::forbidden("publishable keys may only create payments")),
        KeyKind::Secret => Ok((Viewer::Merchant(scope(p, Access::Merchant)?), actor)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApiKeyId, MerchantId};

    fn key(kind: KeyKind, merchant: bool) -> Principal {
        Principal {
            key_id: ApiKeyId::generate(),
            kind,
            merchant_id: merchant.then(MerchantId::generate),
            livemode: false,
        }
    }

    #[test]
    fn each_kind_gets_only_its_access() {
        let secret = key(KeyKind::Secret, true);
        let publishable = key(KeyKind::Publishable, true);
        let ops = key(KeyKind::Ops, false);
        assert!(scope(&secret, Access::Merchant).is_ok());
        assert!(scope(&publishable, Access::CreatePayments).is_ok());
        assert_eq!(scope(&publishable, Access::Merchant).unwrap_err().status, 403);
        assert_eq!(scope(&ops, Access::CreatePayments).unwrap_err().status, 403);
        assert!(matches!(viewer(&ops), Ok((Viewer::Operator, _))));
        assert!(matches!(viewer(&secret), Ok((Viewer::Merchant(_), _))));
        assert_eq!(viewer(&publishable).unwrap_err().status, 403);
    }
}
