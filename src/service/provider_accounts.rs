//! Provider accounts (contract §12): a merchant connects its own account at
//! a provider that needs one (Stripe), per mode. The credentials are sealed
//! at rest and never shown again; one merchant's account is never used for
//! another's payments (a payment method is bound to the account that issued
//! it, and every lookup is by merchant and mode).

use serde_json::{Value, json};

use super::params::Fields;
use super::{ApiError, Ctx, ErrorCode, list_body};
use crate::db::provider_accounts::{self as store, ProviderAccount};
use crate::domain::{ProviderAccountId, Scope};
use crate::provider::stripe::{self, credentials::Credentials};

/// Longest credential value accepted before its shape is checked.
const CREDENTIAL_MAX: usize = 255;

fn parse_id(raw: &str) -> Result<ProviderAccountId, ApiError> {
    ProviderAccountId::parse(raw).ok_or_else(|| ApiError::not_found("provider account"))
}

/// `POST /v1/provider_accounts`: `provider` (`stripe`) and `credentials`
/// (`secret_key`, `webhook_secret`). 409 `provider_account_exists` when the
/// merchant has one at this provider in this mode.
pub async fn create(ctx: &Ctx, scope: &Scope, body: Value) -> Result<ProviderAccount, ApiError> {
    let mut f = Fields::new(body, &["provider", "credentials"])?;
    let provider = f.string("provider", 64)?;
    if provider != stripe::NAME || !ctx.providers.needs_account(&provider) {
        return Err(ApiError::invalid("provider", "provider must be stripe"));
    }
    let mut c = f.object("credentials", &["secret_key", "webhook_secret"])?;
    let credentials = Credentials {
        secret_key: c.string("secret_key", CREDENTIAL_MAX).map_err(|e| e.with_param("credentials"))?,
        webhook_secret: c.string("webhook_secret", CREDENTIAL_MAX).map_err(|e| e.with_param("credentials"))?,
    };
    credentials.check(scope.livemode).map_err(|e| ApiError::invalid("credentials", e.to_string()))?;
    let id = ProviderAccountId::generate();
    let sealed = credentials.seal(&ctx.secrets, &id);
    let mut conn = ctx.db.acquire().await?;
    match store::insert(&mut conn, &id, scope, &provider, &sealed).await {
        Ok(account) => Ok(account),
        Err(e) if crate::db::is_unique_violation(&e, store::ONE_PER_PROVIDER) => Err(ApiError::new(
            409,
            ErrorCode::ProviderAccountExists,
            format!("this merchant has a {provider} account in this mode already; delete it first"),
        )
        .with_param("provider")),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/provider_accounts`: the merchant's accounts in this mode.
pub async fn list(ctx: &Ctx, scope: &Scope) -> Result<Value, ApiError> {
    let rows = store::list(&ctx.db, scope).await?;
    let total = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    list_body(&rows, false, total)
}

/// `GET /v1/provider_accounts/{id}`
pub async fn retrieve(ctx: &Ctx, scope: &Scope, id: &str) -> Result<ProviderAccount, ApiError> {
    let id = parse_id(id)?;
    store::find(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("provider account"))
}

/// `DELETE /v1/provider_accounts/{id}`: the credentials are wiped; payment
/// methods it issued can no longer be charged, and calls still due for its
/// payments fail as a configuration error (`provider_error`).
pub async fn delete(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    if !store::delete(&ctx.db, scope, &id).await? {
        return Err(ApiError::not_found("provider account"));
    }
    Ok(json!({"id": id, "object": "provider_account", "deleted": true}))
}
