//! CSRF protection. Every state-changing console form carries a token in a
//! hidden field, derived from the session token (a hash with a purpose
//! label), so it is tied to the session, needs no storage, and a page of
//! another site can neither read it nor guess it. A POST without it, or with
//! another session's, is refused with 403 before anything runs. Browsers
//! that say a request comes from another site (`Sec-Fetch-Site`) are refused
//! too, sign-in included, which has no session yet.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ConsoleError;
use super::session::Signed;
use crate::http::AppState;

/// Largest console form body: a reason, a few dates, or a page of ids.
pub const FORM_LIMIT: usize = 16 * 1024;
/// Most fields in one form (a page of selected attempts and a few more).
const FORM_FIELDS_MAX: usize = 200;

/// The CSRF token of a session token.
pub fn token_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"payd console csrf\0");
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

/// A decoded form: its fields in order (a field may repeat).
#[derive(Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

fn cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| !matches!(v, "same-origin" | "none"))
}

/// Reads a bounded `application/x-www-form-urlencoded` body.
async fn read_form(body: Body) -> Result<FormData, ConsoleError> {
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| ConsoleError::status(413, format!("a console form is at most {FORM_LIMIT} bytes")))?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::status(400, "the form could not be read"))?;
    if pairs.len() > FORM_FIELDS_MAX {
        return Err(ConsoleError::status(400, format!("a console form has at most {FORM_FIELDS_MAX} fields")));
    }
    if pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(ConsoleError::status(400, "form fields must not contain NUL bytes"));
    }
    Ok(FormData(pairs))
}

/// A form posted without a session (sign-in): same-site, bounded.
pub struct PlainForm(pub FormData);

impl FromRequest<AppState> for PlainForm {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ConsoleError> {
        if cross_site(req.headers()) {
            return Err(ConsoleError::status(403, "a console form must be sent from the console"));
        }
        Ok(Self(read_form(req.into_body()).await?))
    }
}

/// A state-changing form of a signed-in user whose CSRF token matches the
/// session's. Without a session, or with a missing or wrong token: 403.
pub struct Posted(pub Signed, pub FormData);

impl FromRequest<AppState> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = req.into_parts();
        if cross_site(&parts.headers) {
            return Err(ConsoleError::status(403, "a console form must be sent from the console"));
        }
        let signed = Signed::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| ConsoleError::status(403, "your console session has ended: sign in again"))?;
        let form = read_form(body).await?;
        let sent = form.get("csrf").unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(signed.csrf.as_bytes())) {
            return Err(ConsoleError::status(
                403,
                "this form has no valid CSRF token: reload the page and send it again",
            ));
        }
        Ok(Self(signed, form))
    }
}
