//! The console's own use cases (contract §14): signing in with a key,
//! authenticated exactly as the API authenticates it, the server-side
//! session that sign-in opens, and the few reads only the console shows.
//! Everything else the console does goes through the API's use cases with
//! the session's viewer, so it is no way around their rules.

use std::time::Duration;

use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::auth::{self, Access};
use super::{ApiError, Ctx, ErrorCode, list_body, to_json};
use crate::db::{console_sessions, console_views};
use crate::domain::{PaymentId, Principal, Scope, Viewer};

/// How long a console session lasts: a working day, then sign in again.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Length of a session token: 32 random bytes, hex.
const TOKEN_LEN: usize = 64;

/// A signed-in console user: the key the session acts as, and what it may see.
#[derive(Clone, Debug)]
pub struct Session {
    /// The key, as authentication found it.
    pub principal: Principal,
    /// What the key may read (the API's viewer of the same key).
    pub viewer: Viewer,
    /// The audit log's actor (the key's id).
    pub actor: String,
}

impl Session {
    /// True for an operator key.
    pub fn is_operator(&self) -> bool {
        matches!(self.viewer, Viewer::Operator)
    }

    /// The tenant of a merchant session; 403 for operators, as on the API's
    /// merchant routes.
    pub fn scope(&self) -> Result<Scope, ApiError> {
        auth::scope(&self.principal, Access::Merchant)
    }
}

/// Only a hash of a token is stored: the table alone opens no session.
fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn is_token(token: &str) -> bool {
    token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Signs in with an ops key or a merchant's secret key: 401 for a key the
/// API would refuse, 403 for a publishable key, 429 when `client` (the
/// caller's address) tried too often. Answers the new session's token.
pub async fn sign_in(ctx: &Ctx, client: &str, key: &str) -> Result<String, ApiError> {
    limit_sign_ins(ctx, client).await?;
    let key = key.trim();
    let principal =
        auth::authenticate(ctx, Some(&format!("Bearer {key}")), "enter an operator key or a secret key").await?;
    // The API's rule for readers: ops keys and secret keys, never publishable ones.
    auth::viewer(&principal)?;
    let mut bytes = [0u8; TOKEN_LEN / 2];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    if let Err(e) = console_sessions::purge_expired(&ctx.db).await {
        tracing::debug!(error = %e, "console: expired sessions could not be purged");
    }
    console_sessions::create(&ctx.db, &token_hash(&token), &principal.key_id, SESSION_TTL).await?;
    Ok(token)
}

/// Sign-in attempts count against the API's rate limit (per minute and
/// burst), in a bucket of the caller's address: a guesser tries new keys,
/// so a bucket per key would never fill.
async fn limit_sign_ins(ctx: &Ctx, client: &str) -> Result<(), ApiError> {
    let limits = &ctx.settings.rate_limit;
    if limits.per_minute == 0 || limits.burst == 0 {
        return Ok(());
    }
    let bucket = format!("console sign-in {client}");
    match super::ratelimit::take(ctx, &bucket, limits.per_minute, limits.burst).await {
        Some(d) if !d.allowed => Err(ApiError::new(
            429,
            ErrorCode::RateLimited,
            format!("too many sign-in attempts; retry in {} s", d.retry_after.max(1)),
        )),
        _ => Ok(()),
    }
}

/// The live session of `token`, if any: unexpired, and its key not revoked.
pub async fn session(ctx: &Ctx, token: &str) -> Result<Option<Session>, ApiError> {
    if !is_token(token) {
        return Ok(None);
    }
    let Some(principal) = console_sessions::find(&ctx.db, &token_hash(token)).await? else { return Ok(None) };
    let (viewer, actor) = auth::viewer(&principal)?;
    Ok(Some(Session { principal, viewer, actor }))
}

/// Ends the session of `token` (signing out).
pub async fn sign_out(ctx: &Ctx, token: &str) -> Result<(), ApiError> {
    if is_token(token) {
        console_sessions::delete(&ctx.db, &token_hash(token)).await?;
    }
    Ok(())
}

/// Most deliveries a payment's timeline shows.
pub const TIMELINE_DELIVERIES: i64 = 100;

/// The deliveries of a merchant's payment's events, newest first (the
/// timeline); 404 for a payment that is not the tenant's.
pub async fn payment_deliveries(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = PaymentId::parse(id).ok_or_else(|| ApiError::not_found("payment"))?;
    let rows = console_views::deliveries_of_payment(&ctx.db, scope, &id, TIMELINE_DELIVERIES).await?;
    // At most TIMELINE_DELIVERIES, all on one page.
    list_body(&rows, false, rows.len() as i64)
}

/// Every merchant's endpoints with their health, failing first: operators
/// only (403 for merchants, who see their own through the API's list).
pub async fn all_endpoints(ctx: &Ctx, viewer: &Viewer, limit: i64, offset: i64) -> Result<Value, ApiError> {
    if !matches!(viewer, Viewer::Operator) {
        return Err(ApiError::forbidden("every merchant's endpoints are for operator keys"));
    }
    let (rows, total) = console_views::all_endpoints(&ctx.db, limit, offset).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        let mut endpoint = to_json(&row.endpoint)?;
        endpoint["merchant_id"] = json!(row.merchant_id);
        data.push(endpoint);
    }
    let has_more = offset + i64::try_from(data.len()).unwrap_or(i64::MAX) < total;
    list_body(&data, has_more, total)
}
