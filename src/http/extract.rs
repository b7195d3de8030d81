//! Extractors that turn requests into checked input or contract errors:
//! the authenticated key (through [`crate::service::auth`], the one
//! authentication of every entry point), a JSON body with its
//! `Idempotency-Key`, a query map, `Prefer: wait`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde_json::Value;

use super::AppState;
use crate::domain::{Principal, Scope, Viewer};
use crate::service::auth::{self, Access};
use crate::service::{ApiError, ErrorCode, IdempotencyKey};

/// Largest accepted body (contract §3: 413 above).
pub const BODY_LIMIT: usize = 64 * 1024;

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    // A value that is not visible ASCII is no `Bearer <key>`: "" is refused as malformed.
    let header = parts.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    auth::authenticate(&state.ctx, header, "no API key: send Authorization: Bearer <key>").await
}

/// A merchant's secret key: every merchant operation.
pub struct Merchant(pub Scope);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(auth::scope(&principal(parts, state).await?, Access::Merchant)?))
    }
}

/// An operator key (every merchant) or a merchant's secret key (its own):
/// who may read payments and attempts, and cancel attempts; with the actor.
pub struct Reader(pub Viewer, pub String);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (viewer, actor) = auth::viewer(&principal(parts, state).await?)?;
        Ok(Self(viewer, actor))
    }
}

/// A merchant's secret or publishable key: enough to create a payment.
pub struct PaymentCreator(pub Scope);

impl FromRequestParts<AppState> for PaymentCreator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(auth::scope(&principal(parts, state).await?, Access::CreatePayments)?))
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
                ApiError::new(413, ErrorCode::BodyTooLarge, format!("the body must be at most {BODY_LIMIT} bytes"))
            } else {
                ApiError::new(400, ErrorCode::BodyInvalid, "the body could not be read")
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
                ErrorCode::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            ));
        }
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(400, ErrorCode::JsonInvalid, format!("the body is not valid JSON: {e}")))?;
        ApiError::check_nul(&body)?;
        Ok(Self(body))
    }
}

/// A JSON body with its `Idempotency-Key`, if sent, bound to the request:
/// the key's fingerprint is the method and the matched route with its path
/// parameters filled in, and the body. No handler names its operation.
pub struct Keyed(pub Option<IdempotencyKey>, pub Value);

impl<S: Send + Sync> FromRequest<S> for Keyed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::new(400, ErrorCode::IdempotencyKeyInvalid, "Idempotency-Key must be visible ASCII")
            })?),
        };
        let route = match &key {
            Some(_) => Some(route(&mut parts, state).await?),
            None => None,
        };
        let method = parts.method.clone();
        let JsonBody(body) = JsonBody::from_request(Request::from_parts(parts, body), state).await?;
        let key = match (key, route) {
            (Some(key), Some(route)) => Some(IdempotencyKey::new(&key, method.as_str(), &route, &body)?),
            _ => None,
        };
        Ok(Self(key, body))
    }
}

/// The route the request matched, with its path parameters filled in:
/// `/v1/payments/{id}/refund` → `/v1/payments/pay_…/refund`.
async fn route<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, ApiError> {
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a keyed request outside a matched route")))?;
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::not_found("object"))?;
    Ok(params.iter().fold(template, |route, (name, value)| route.replace(&format!("{{{name}}}"), value)))
}

/// Query parameters as a map; a malformed query string is a 400.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Decoded lossily by serde: an invalid byte would silently become U+FFFD.
        if !parts.uri.query().is_none_or(decodes_to_utf8) {
            return Err(ApiError::new(400, ErrorCode::QueryInvalid, "the query string must be valid UTF-8"));
        }
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::new(400, ErrorCode::QueryInvalid, "the query string is malformed"))?;
        // A list parameter (`types[]=a&types[]=b`) may repeat: its values are
        // joined with commas. Any other repeated parameter is refused rather
        // than silently cut to one of its values.
        let mut q: HashMap<String, String> = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            match q.get_mut(&k) {
                Some(values) if k.ends_with("[]") => {
                    values.push(',');
                    values.push_str(&v);
                }
                Some(_) => {
                    let message = format!("{} is given more than once", k.escape_default());
                    return Err(
                        ApiError::new(400, ErrorCode::QueryInvalid, message).with_param(k.escape_default().to_string())
                    );
                }
                None => {
                    q.insert(k, v);
                }
            }
        }
        if let Some((k, _)) = q.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(ApiError::new(
                400,
                ErrorCode::QueryInvalid,
                format!("{} must not contain NUL bytes", k.escape_default()),
            )
            .with_param(k.escape_default().to_string()));
        }
        Ok(Self(q))
    }
}

/// Whether every percent-decoded part of a query string is UTF-8.
fn decodes_to_utf8(query: &str) -> bool {
    query.split(['&', '=']).all(|part| {
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        std::str::from_utf8(&out).is_ok()
    })
}

/// `Prefer: wait=N`, if sent (400 when N is not 0 to 30 seconds).
pub struct PreferWait(pub Option<std::time::Duration>);

impl<S: Send + Sync> FromRequestParts<S> for PreferWait {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut wait = None;
        for v in parts.headers.get_all("prefer") {
            let v =
                v.to_str().map_err(|_| ApiError::new(400, ErrorCode::PreferInvalid, "Prefer must be visible ASCII"))?;
            if let Some(w) = crate::service::wait::parse_prefer(v)? {
                wait = Some(w);
            }
        }
        Ok(Self(wait))
    }
}

/// The `{id}` of a route; one that is not UTF-8 or holds a NUL is a clear
/// 400 (contract §11).
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("id", "the id in the path must be valid UTF-8"))?;
        if id.contains('\0') {
            return Err(ApiError::nul("id"));
        }
        Ok(Self(id))
    }
}
