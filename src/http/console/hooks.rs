//! Where the operator toolkit (contract §14: retry now, reschedule, bulk
//! cancel by filter, holds, resolving unknown transactions) plugs into the
//! console once its use cases land (branch `ops`). Until then each place
//! shows what will be there and does nothing: the console never
//! reimplements a rule the API does not have yet.
//!
//! To wire one: add the route in `super::router`, call the toolkit's
//! service function with the session's viewer and actor (as
//! `super::operator::cancel` calls `service::attempts::cancel`), and put
//! its form here, with `csrf_field` and a confirmation (`data-confirm`).

use maud::{Markup, html};
use serde_json::Value;

use super::layout;
use super::session::Signed;
use super::{ConsoleError, Page, ok};

/// HOOK (ops toolkit): the per-attempt actions `POST /v1/attempts/{id}/retry_now`
/// and `POST /v1/attempts/{id}/reschedule` (`at`*). Shown disabled until
/// `service::attempts::retry_now` / `reschedule` exist.
pub fn attempt_actions(_attempt: &Value, _csrf: &str) -> Markup {
    html! {
        button type="button" disabled title="arrives with the operator toolkit" { "Retry now" }
        " "
        button type="button" disabled title="arrives with the operator toolkit" { "Reschedule…" }
    }
}

/// HOOK (ops toolkit): `POST /v1/attempts/bulk_cancel` by filter (provider,
/// error code, scheduled before/after) with a dry run showing `matched`.
/// The list's own selection cancel works today through the cancel use case.
pub fn bulk_actions() -> Markup {
    html! {
        p.todo { "Bulk cancel by filter (provider, error code, scheduled window, dry run) arrives with the operator toolkit." }
    }
}

fn operators_only(signed: &Signed) -> Result<(), ConsoleError> {
    if signed.session.is_operator() { Ok(()) } else { Err(ConsoleError::status(403, "this page is for operator keys")) }
}

/// HOOK (ops toolkit): `GET /console/holds`: `GET /v1/holds`, create a
/// hold (provider, merchant, error code, reason*) and release one
/// (`over`, default 10m).
pub async fn holds(signed: Signed) -> Page {
    operators_only(&signed)?;
    let body = html! {
        p.todo id="todo" { "Holds (pausing the attempts of a provider outage and spreading them back on release) arrive with the operator toolkit." }
    };
    ok(layout::page("Holds", Some((&signed.session, &signed.csrf)), body))
}

/// HOOK (ops toolkit): `GET /console/transactions`: the transactions whose
/// outcome is unknown (`GET /v1/transactions?status=unknown`), each with a
/// form to resolve it (`status`* succeeded|failed, `provider_reference`,
/// `reason`*). No use case lists them yet, so nothing is listed here.
pub async fn unknown_transactions(signed: Signed) -> Page {
    operators_only(&signed)?;
    let body = html! {
        p.todo id="todo" { "Listing and resolving transactions with an unknown outcome arrives with the operator toolkit." }
    };
    ok(layout::page("Unknown transactions", Some((&signed.session, &signed.csrf)), body))
}
