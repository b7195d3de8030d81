//! The operator toolkit in the console (contract §14): retry now and
//! reschedule on each scheduled attempt, bulk cancel by filter with a dry
//! run, holds (create, release), and resolving transactions whose outcome
//! is unknown. Every action goes through the API's own use case with the
//! session's viewer and actor, so the same rules, audit and guards apply.

use axum::extract::State;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::csrf::{FormData, Posted};
use super::layout::{self, badge, csrf_field, s, text, time};
use super::session::Signed;
use super::{ConsoleError, ConsolePath, ConsoleQuery, Page, ok};
use crate::http::AppState;
use crate::service::{holds as hold_svc, resolve as resolve_svc, toolkit as toolkit_svc};

/// The per-attempt actions of a scheduled attempt: retry now, reschedule.
/// They sit in the attempts table, itself inside the cancel-selected form,
/// and forms do not nest: the controls name their own forms (`form=`),
/// which [`attempt_forms`] renders after the table.
pub fn attempt_actions(attempt: &Value, _csrf: &str) -> Markup {
    let id = s(attempt, "id");
    html! {
        button type="submit" form={ "retry-" (id) } class="retry-now" { "Retry now" }
        " "
        input name="at" form={ "reschedule-" (id) } required placeholder="2026-12-05T09:00:00Z" size="22" title="RFC 3339";
        button type="submit" form={ "reschedule-" (id) } { "Reschedule" }
    }
}

/// The forms of [`attempt_actions`], one pair per scheduled attempt.
pub fn attempt_forms(attempts: &[Value], csrf: &str) -> Markup {
    html! {
        @for a in attempts.iter().filter(|a| s(a, "status") == "scheduled") {
            form id={ "retry-" (s(a, "id")) } method="post" action={ "/console/attempts/" (s(a, "id")) "/retry_now" }
                data-confirm="Run this attempt now?" { (csrf_field(csrf)) }
            form id={ "reschedule-" (s(a, "id")) } method="post" action={ "/console/attempts/" (s(a, "id")) "/reschedule" } {
                (csrf_field(csrf))
            }
        }
    }
}

/// The link to bulk cancel by filter, above the attempts list.
pub fn bulk_actions() -> Markup {
    html! { p { a href="/console/attempts/bulk_cancel" id="bulk-cancel" { "Cancel by filter…" } } }
}

fn operators_only(signed: &Signed) -> Result<(), ConsoleError> {
    if signed.session.is_operator() { Ok(()) } else { Err(ConsoleError::status(403, "this page is for operator keys")) }
}

/// The non-empty fields of a form, as a JSON object.
fn fields(form: &FormData, names: &[&str]) -> Value {
    let mut out = json!({});
    for name in names {
        if let Some(v) = form.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            out[*name] = json!(v);
        }
    }
    out
}

fn done(signed: &Signed, title: &str, message: Markup, back: &str) -> Page {
    let body = html! { p.flash id="flash" { (message) } p { a href=(back) { "Back" } } };
    ok(layout::page(title, Some((&signed.session, &signed.csrf)), body))
}

/// `POST /console/attempts/{id}/retry_now`.
pub async fn retry_now(State(st): State<AppState>, ConsolePath(id): ConsolePath, Posted(signed, _): Posted) -> Page {
    let (viewer, actor) = (&signed.session.viewer, &signed.session.actor);
    let a = toolkit_svc::retry_now(&st.ctx, viewer, actor, &id, json!({})).await?;
    done(
        &signed,
        "Retry now",
        html! { "Attempt " span.mono { (id) } " is due now (" (badge(s(&a, "status"))) ")." },
        "/console/attempts",
    )
}

/// `POST /console/attempts/{id}/reschedule` (`at`*).
pub async fn reschedule(
    State(st): State<AppState>,
    ConsolePath(id): ConsolePath,
    Posted(signed, form): Posted,
) -> Page {
    let (viewer, actor) = (&signed.session.viewer, &signed.session.actor);
    let a = toolkit_svc::reschedule(&st.ctx, viewer, actor, &id, fields(&form, &["at"])).await?;
    done(
        &signed,
        "Reschedule",
        html! { "Attempt " span.mono { (id) } " runs at " (time(&a, "scheduled_at")) "." },
        "/console/attempts",
    )
}

/// `GET /console/attempts/bulk_cancel`: the filter, the reason and a dry run.
pub async fn bulk_form(signed: Signed) -> Page {
    let body = html! {
        form method="post" action="/console/attempts/bulk_cancel" id="bulk"
            data-confirm="Cancel every scheduled attempt matching this filter (unless this is a dry run)?" {
            (csrf_field(&signed.csrf))
            fieldset {
                legend { "Scheduled attempts matching every field given" }
                @if signed.session.is_operator() { label { "Merchant " input name="merchant_id" placeholder="mer_…"; } " " }
                label { "Provider " input name="provider"; } " "
                label { "Error code " input name="error_code"; } " "
                label { "Scheduled after " input name="scheduled_after" placeholder="RFC 3339"; } " "
                label { "Scheduled before " input name="scheduled_before" placeholder="RFC 3339"; }
            }
            fieldset { legend { "Reason (audit log)" } input name="reason" required maxlength="500" size="60"; }
            label { input type="checkbox" name="dry_run" value="true" checked; " Dry run: count only" } " "
            button.danger type="submit" { "Cancel matching" }
        }
    };
    ok(layout::page("Cancel by filter", Some((&signed.session, &signed.csrf)), body))
}

/// `POST /console/attempts/bulk_cancel`.
pub async fn bulk_cancel(State(st): State<AppState>, Posted(signed, form): Posted) -> Page {
    let filter = fields(&form, &["merchant_id", "provider", "error_code", "scheduled_after", "scheduled_before"]);
    let dry_run = form.get("dry_run") == Some("true");
    let body = json!({ "filter": filter, "reason": form.get("reason").unwrap_or(""), "dry_run": dry_run });
    let r = toolkit_svc::bulk_cancel(&st.ctx, &signed.session.viewer, &signed.session.actor, body).await?;
    let what = if dry_run { "Dry run: nothing canceled." } else { "Canceled." };
    done(
        &signed,
        "Cancel by filter",
        html! { (what) " Matched " (text(&r, "matched")) ", canceled " (text(&r, "canceled")) "." },
        "/console/attempts",
    )
}

/// `GET /console/holds`: the holds, a form to create one, and release.
pub async fn holds(State(st): State<AppState>, signed: Signed, q: ConsoleQuery) -> Page {
    operators_only(&signed)?;
    let (query, limit, offset) = q.pick(&["status"]);
    let list = hold_svc::list(&st.ctx, &signed.session.viewer, query).await?;
    let rows = list["data"].as_array().cloned().unwrap_or_default();
    let csrf = &signed.csrf;
    let body = html! {
        form method="post" action="/console/holds" id="create-hold"
            data-confirm="Hold every matching scheduled attempt, and those that come due, until released?" {
            (csrf_field(csrf))
            fieldset {
                legend { "Hold the attempts of (every field given must match)" }
                label { "Provider " input name="provider"; } " "
                label { "Merchant " input name="merchant_id" placeholder="mer_…"; } " "
                label { "Error code " input name="error_code"; } " "
                label { "Reason " input name="reason" required maxlength="500" size="40"; }
            }
            button type="submit" { "Create hold" }
        }
        table {
            thead { tr { th { "Hold" } th { "Status" } th { "Provider" } th { "Merchant" } th { "Error code" }
                th { "Reason" } th { "Matched" } th { "Created" } th { "Release" } } }
            tbody {
                @for h in &rows {
                    tr data-hold=(s(h, "id")) {
                        td.mono { (s(h, "id")) } td { (badge(s(h, "status"))) } td { (text(h, "provider")) }
                        td.mono { (text(h, "merchant_id")) } td { (text(h, "error_code")) } td { (s(h, "reason")) }
                        td { (text(h, "matched")) } td { (time(h, "created_at")) }
                        td { @if s(h, "status") == "active" {
                            form.inline method="post" action={ "/console/holds/" (s(h, "id")) "/release" }
                                data-confirm="Release this hold and spread its attempts over the window?" {
                                (csrf_field(csrf))
                                input name="over" value="10m" size="5" title="spread over";
                                button type="submit" { "Release" }
                            }
                        } }
                    }
                }
                @if rows.is_empty() { tr { td colspan="9" .muted { "No holds." } } }
            }
        }
        (layout::pager("/console/holds", &[], &list, limit, offset))
    };
    ok(layout::page("Holds", Some((&signed.session, csrf)), body))
}

/// `POST /console/holds`.
pub async fn create_hold(State(st): State<AppState>, Posted(signed, form): Posted) -> Page {
    let body = fields(&form, &["provider", "merchant_id", "error_code", "reason"]);
    let h = hold_svc::create(&st.ctx, &signed.session.viewer, &signed.session.actor, body).await?;
    done(
        &signed,
        "Holds",
        html! { "Hold " span.mono id="hold" { (s(&h, "id")) } " holds " (text(&h, "matched")) " attempt(s)." },
        "/console/holds",
    )
}

/// `POST /console/holds/{id}/release` (`over`).
pub async fn release_hold(
    State(st): State<AppState>,
    ConsolePath(id): ConsolePath,
    Posted(signed, form): Posted,
) -> Page {
    let h = hold_svc::release(&st.ctx, &signed.session.viewer, &signed.session.actor, &id, fields(&form, &["over"]))
        .await?;
    done(&signed, "Holds", html! { "Hold " span.mono { (id) } " is " (badge(s(&h, "status"))) "." }, "/console/holds")
}

/// `GET /console/transactions`: transactions whose outcome is unknown,
/// the longest stuck first, each with its resolve form.
pub async fn unknown_transactions(State(st): State<AppState>, signed: Signed, q: ConsoleQuery) -> Page {
    operators_only(&signed)?;
    let (query, limit, offset) = q.pick(&[]);
    let list = resolve_svc::list(&st.ctx, &signed.session.viewer, query).await?;
    let rows = list["data"].as_array().cloned().unwrap_or_default();
    let csrf = &signed.csrf;
    let body = html! {
        p { "Ask the provider first (its dashboard, or the transaction's reference): resolving settles the payment and sends its events." }
        table {
            thead { tr { th { "Transaction" } th { "Payment" } th { "Type" } th { "Amount" } th { "Created" } th { "Resolve" } } }
            tbody {
                @for t in &rows {
                    tr data-transaction=(s(t, "id")) {
                        td.mono { (s(t, "id")) }
                        td.mono { a href={ "/console/payments/" (s(t, "payment_id")) } { (s(t, "payment_id")) } }
                        td { (s(t, "type")) } td { (layout::amount(t, "amount")) } td { (time(t, "created_at")) }
                        td {
                            form.inline method="post" action={ "/console/transactions/" (s(t, "id")) "/resolve" }
                                data-confirm="Settle this transaction as chosen? The payment and its webhooks follow." {
                                (csrf_field(csrf))
                                select name="status" { option value="succeeded" { "succeeded" } option value="failed" { "failed" } }
                                " " input name="provider_reference" value=(s(t, "provider_reference")) placeholder="provider reference" size="16";
                                " " input name="reason" required maxlength="500" placeholder="reason" size="20";
                                " " button type="submit" class="resolve" { "Resolve" }
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="6" .muted { "No transaction waits for an operator." } } }
            }
        }
        (layout::pager("/console/transactions", &[], &list, limit, offset))
    };
    ok(layout::page("Unknown transactions", Some((&signed.session, csrf)), body))
}

/// `POST /console/transactions/{id}/resolve` (`status`*, `provider_reference`, `reason`*).
pub async fn resolve(State(st): State<AppState>, ConsolePath(id): ConsolePath, Posted(signed, form): Posted) -> Page {
    let body = fields(&form, &["status", "provider_reference", "reason"]);
    let t = resolve_svc::resolve(&st.ctx, &signed.session.viewer, &signed.session.actor, &id, body).await?;
    done(
        &signed,
        "Resolve",
        html! { "Transaction " span.mono { (id) } " is " (badge(s(&t, "status"))) "." },
        "/console/transactions",
    )
}
