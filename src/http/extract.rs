//! Extractors that turn requests into checked input or contract errors:
//! the authenticated key, a JSON body, a query map, the Idempotency-Key.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde_json::Value;

use super::AppState;
use crate::db::attempts::Viewer;
use crate::db::keys::{self, KeyKind, Principal};
use crate::db::payments::Scope;
use crate::error::ApiError;

/// Largest accepted body (contract §3: 413 above).
pub const BODY_LIMIT: usize = 64 * 1024;

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("no API key: send Authorization: Bearer <key>"))?;
    let key = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(|| ApiError::unauthenticated("malformed Authorization header: use Bearer <key>"))?;
    keys::authenticate(&state.ctx.db, key).await?.ok_or_else(|| ApiError::unauthenticated("invalid API key"))
}

fn merchant_scope(p: &Principal) -> Result<Scope, ApiError> {
    match &p.merchant_id {
        Some(m) => Ok(Scope { merchant_id: m.clone(), livemode: p.livemode, actor: p.key_id.to_string() }),
        None => Err(ApiError::forbidden("operator keys cannot use merchant routes")),
    }
}

/// A merchant's secret key: every merchant operation.
pub struct Merchant(pub Scope);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = principal(parts, state).await?;
        if p.kind == KeyKind::Publishable {
            return Err(ApiError::forbidden("publishable keys may only create payments"));
        }
        Ok(Self(merchant_scope(&p)?))
    }
}

/// An operator key (every merchant) or a merchant's secret key (its own):
/// who may read payments and attempts, and cancel attempts.
pub struct Reader(pub Viewer, pub String);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = principal(parts, state).await?;
        let actor = p.key_id.to_string();
        match p.kind {
            KeyKind::Ops => Ok(Self(Viewer::Operator, actor)),
            KeyKind::Publishable => Err(ApiError::forbidden("publishable keys may only create payments")),
            KeyKind::Secret => Ok(Self(Viewer::Merchant(merchant_scope(&p)?), actor)),
        }
    }
}

/// A merchant's secret or publishable key: enough to create a payment.
pub struct PaymentCreator(pub Scope);

impl FromRequestParts<AppState> for PaymentCreator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = principal(parts, state).await?;
        Ok(Self(merchant_scope(&p)?))
    }
}

/// A JSON body (an empty body is `null`). 415 for other content types, 413
/// above [`BODY_LIMIT`], 400 for malformed JSON.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status().as_u16() == 413 {
                ApiError::new(413, "body_too_large", format!("the body must be at most {BODY_LIMIT} bytes"))
            } else {
                ApiError::new(400, "body_invalid", "the body could not be read")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Null));
        }
        let is_json = content_type.as_deref().is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::new(400, "json_invalid", format!("the body is not valid JSON: {e}")))
    }
}

/// Query parameters as a map; a malformed query string is a 400.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|_| ApiError::new(400, "query_invalid", "the query string is malformed"))
    }
}

/// `Prefer: wait=N`, if sent (400 when N is not 0 to 30 seconds).
pub struct PreferWait(pub Option<std::time::Duration>);

impl<S: Send + Sync> FromRequestParts<S> for PreferWait {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut wait = None;
        for v in parts.headers.get_all("prefer") {
            let v = v.to_str().map_err(|_| ApiError::new(400, "prefer_invalid", "Prefer must be visible ASCII"))?;
            if let Some(w) = crate::service::wait::parse_prefer(v)? {
                wait = Some(w);
            }
        }
        Ok(Self(wait))
    }
}

/// The raw `Idempotency-Key` header, if sent.
pub struct IdempotencyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(Self(None)),
            Some(v) => v
                .to_str()
                .map(|s| Self(Some(s.to_owned())))
                .map_err(|_| ApiError::new(400, "idempotency_key_invalid", "Idempotency-Key must be visible ASCII")),
        }
    }
}

/// The `{id}` of a route; an undecodable one is simply not found.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|_| ApiError::not_found("object"))
    }
}
