//! Signing in and out, and the session cookie: a random token the server
//! keeps only a hash of (`console_sessions`), sent back `HttpOnly` (no
//! script reads it), `SameSite=Strict` (no other site's page sends it),
//! `Path=/console` (the API never sees it) and `Secure` outside development.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::csrf::{self, PlainForm, Posted};
use super::{ConsoleError, layout, page_response};
use crate::http::AppState;
use crate::service::console::{self as svc, SESSION_TTL, Session};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "payd_console";

/// The session token a request's cookies carry, if any.
fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('=').map(str::to_owned))
}

/// A signed-in console user with the CSRF token of its session. A GET
/// without a live session is sent to the sign-in page.
pub struct Signed {
    /// The session: who it acts as, and what it may see.
    pub session: Session,
    /// The CSRF token its forms carry.
    pub csrf: String,
    /// The session token itself (to sign out).
    pub(super) token: String,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let token = cookie_token(parts).ok_or(ConsoleError::SignIn)?;
        let session = svc::session(&state.ctx, &token).await?.ok_or(ConsoleError::SignIn)?;
        Ok(Self { session, csrf: csrf::token_for(&token), token })
    }
}

/// The caller's address, for the sign-in rate limit ("local" when the
/// server runs without connection info, as in-process routers do).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip().to_string());
        Ok(Self(addr.unwrap_or_else(|| "local".to_owned())))
    }
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = if state.ctx.settings.is_development() { "" } else { "; Secure" };
    format!("{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={max_age}{secure}")
}

fn sign_in_page(status: u16, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(e) = error { p.error id="error" { (e) } }
        form method="post" action="/console/sign_in" id="sign-in" {
            fieldset {
                legend { "An operator key (sk_ops_…) or a merchant's secret key (sk_…)" }
                input type="password" name="key" id="key" autocomplete="off" required size="48" maxlength="200";
                " "
                button type="submit" { "Sign in" }
            }
        }
        p.muted { "Publishable keys cannot sign in. A session lasts 8 hours." }
    };
    page_response(status, layout::page("Sign in", None, body))
}

/// `GET /console/sign_in`
pub async fn form(signed: Result<Signed, ConsoleError>) -> Response {
    match signed {
        Ok(_) => Redirect::to("/console").into_response(),
        Err(_) => sign_in_page(200, None),
    }
}

/// `POST /console/sign_in` (`key`): the key is authenticated as the API
/// authenticates it; a refused one shows the form again with the reason.
pub async fn sign_in(State(s): State<AppState>, ClientAddr(client): ClientAddr, PlainForm(f): PlainForm) -> Response {
    match svc::sign_in(&s.ctx, &client, f.get("key").unwrap_or("")).await {
        Ok(token) => {
            let set = cookie(&s, &token, SESSION_TTL.as_secs());
            ([(SET_COOKIE, set)], Redirect::to("/console")).into_response()
        }
        Err(e) => sign_in_page(e.status, Some(&e.message)),
    }
}

/// `POST /console/sign_out`: the session is deleted, the cookie cleared.
pub async fn sign_out(State(s): State<AppState>, Posted(signed, _): Posted) -> Response {
    if let Err(e) = svc::sign_out(&s.ctx, &signed.token).await {
        return ConsoleError::Api(e).into_response();
    }
    ([(SET_COOKIE, cookie(&s, "", 0))], Redirect::to("/console/sign_in")).into_response()
}

/// `GET /console`: each kind of user's first page.
pub async fn home(Signed { session, .. }: Signed) -> Redirect {
    Redirect::to(if session.is_operator() { "/console/attempts" } else { "/console/payments" })
}
