//! API key management (contract §11): a merchant's secret key creates,
//! lists and revokes the keys of its merchant and mode; operators revoke any
//! key from the command line. A key is shown once, when it is created.

use serde_json::{Value, json};

use super::params::Fields;
use super::{ApiError, Ctx, list_body, to_json};
use crate::db::keys;
use crate::domain::{ApiKeyId, KeyKind, Scope};

/// Longest key `name`.
pub const NAME_MAX: usize = 100;

/// `POST /v1/api_keys`: `kind` (`secret` or `publishable`) and `name`; the
/// answer is the only one that shows `secret`.
pub async fn create(ctx: &Ctx, scope: &Scope, body: Value) -> Result<Value, ApiError> {
    let mut f = Fields::new(body, &["kind", "name"])?;
    let kind = match f.string("kind", 20)?.as_str() {
        "secret" => KeyKind::Secret,
        "publishable" => KeyKind::Publishable,
        _ => return Err(ApiError::invalid("kind", "kind must be secret or publishable")),
    };
    let name = f.optional_string("name", NAME_MAX)?;
    let secret = keys::generate_key(kind, scope.livemode);
    let mut conn = ctx.db.acquire().await?;
    let key =
        keys::insert_named(&mut conn, Some(&scope.merchant_id), kind, scope.livemode, &secret, name.as_deref()).await?;
    let mut body = to_json(&key)?;
    body["secret"] = json!(secret);
    Ok(body)
}

/// `GET /v1/api_keys`: the merchant's keys in this mode, without secrets.
pub async fn list(ctx: &Ctx, scope: &Scope) -> Result<Value, ApiError> {
    let rows = keys::list_keys(&ctx.db, &scope.merchant_id, scope.livemode).await?;
    let total = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    list_body(&rows, false, total)
}

/// `DELETE /v1/api_keys/{id}`: revokes a key of the merchant and mode; it
/// answers 401 everywhere within a second. A key cannot revoke itself.
pub async fn revoke(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = ApiKeyId::parse(id).ok_or_else(|| ApiError::not_found("api key"))?;
    if id.as_str() == scope.actor {
        return Err(ApiError::invalid("id", "a key cannot revoke itself: use another secret key"));
    }
    if !keys::revoke(&ctx.db, &id, Some((&scope.merchant_id, scope.livemode))).await? {
        return Err(ApiError::not_found("api key"));
    }
    Ok(revoked(&id))
}

/// `payd keys revoke KEY_ID`: an operator revokes any key.
pub async fn revoke_any(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let id = ApiKeyId::parse(id).ok_or_else(|| ApiError::not_found("api key"))?;
    if !keys::revoke(&ctx.db, &id, None).await? {
        return Err(ApiError::not_found("api key"));
    }
    Ok(revoked(&id))
}

fn revoked(id: &ApiKeyId) -> Value {
    json!({"id": id, "object": "api_key", "revoked": true})
}
