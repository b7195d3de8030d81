//! Operators' attempts: the list with its filters, and cancelling one or
//! many with a reason, through the API's cancel use case. A merchant may
//! use these pages too, for its own attempts, exactly as the API lets it.

use axum::extract::State;
use maud::html;
use serde_json::json;

use super::csrf::Posted;
use super::layout::{self, badge, csrf_field, s, text, time};
use super::session::Signed;
use super::{ConsoleError, ConsoleQuery, Page, ok, toolkit as hooks};
use crate::domain::AttemptStatus;
use crate::http::AppState;
use crate::service::attempts as svc;
use crate::service::params::MAX_LIMIT;

/// `GET /console/attempts` (`status`, default `scheduled`; `merchant_id`
/// for operators; `payment_id`; `limit`, `offset`): newest first, with a
/// checkbox on each scheduled attempt to cancel several at once.
pub async fn attempts(State(st): State<AppState>, Signed { session, csrf, .. }: Signed, q: ConsoleQuery) -> Page {
    // A first visit shows what can be acted on; an empty choice means any status.
    let status = if q.0.contains_key("status") { q.value("status") } else { "scheduled".to_owned() };
    let mut picked = ConsoleQuery(q.0.clone());
    picked.0.insert("status".into(), status.clone());
    let names: &[&str] =
        if session.is_operator() { &["status", "merchant_id", "payment_id"] } else { &["status", "payment_id"] };
    let (query, limit, offset) = picked.pick(names);
    let list = svc::list(&st.ctx, &session.viewer, query).await?;
    let rows = list["data"].as_array().cloned().unwrap_or_default();
    let params: Vec<(&str, String)> = vec![
        ("status", status.clone()),
        ("merchant_id", q.value("merchant_id")),
        ("payment_id", q.value("payment_id")),
    ];
    let body = html! {
        form method="get" action="/console/attempts" id="filters" {
            fieldset {
                legend { "Filter" }
                label { "Status " select name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for st in AttemptStatus::ALL {
                        option value=(st.as_str()) selected[status == st.as_str()] { (st.as_str()) }
                    }
                } } " "
                @if session.is_operator() {
                    label { "Merchant " input name="merchant_id" value=(q.value("merchant_id")) placeholder="mer_…" size="20"; } " "
                }
                label { "Payment " input name="payment_id" value=(q.value("payment_id")) placeholder="pay_…" size="24"; } " "
                button type="submit" { "Show" }
            }
        }
        (hooks::bulk_actions())
        form method="get" action="/console/attempts/cancel" id="attempts" {
            table {
                thead { tr {
                    th { input type="checkbox" id="select-all" title="Select every scheduled attempt"; }
                    th { "Attempt" } th { "Payment" } th { "#" } th { "Status" } th { "Scheduled at" }
                    th { "Finished at" } th { "Error" } th { "Actions" }
                } }
                tbody {
                    @for a in &rows {
                        @let scheduled = s(a, "status") == "scheduled";
                        tr data-attempt=(s(a, "id")) {
                            td { @if scheduled { input type="checkbox" name="attempt[]" value=(s(a, "id")); } }
                            td.mono { (s(a, "id")) }
                            td.mono { a href={ "/console/payments/" (s(a, "payment_id")) } { (s(a, "payment_id")) } }
                            td { (text(a, "number")) }
                            td { (badge(s(a, "status"))) }
                            td { (time(a, "scheduled_at")) }
                            td { (time(a, "finished_at")) }
                            td { (text(a, "error_code")) }
                            td {
                                @if scheduled {
                                    a href={ "/console/attempts/cancel?attempt%5B%5D=" (s(a, "id")) } class="cancel-one" { "Cancel…" }
                                    " " (hooks::attempt_actions(a, &csrf))
                                }
                            }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="9" .muted { "No attempts match." } } }
                }
            }
            button type="submit" id="cancel-selected" { "Cancel selected…" }
        }
        (hooks::attempt_forms(&rows, &csrf))
        (layout::pager("/console/attempts", &params, &list, limit, offset))
    };
    ok(layout::page("Attempts", Some((&session, &csrf)), body))
}

/// The selected attempt ids: at most a page of them.
fn selected<'a>(ids: impl Iterator<Item = &'a str>) -> Result<Vec<String>, ConsoleError> {
    let ids: Vec<String> = ids.map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect();
    if ids.is_empty() {
        return Err(ConsoleError::status(400, "select at least one scheduled attempt"));
    }
    if ids.len() > MAX_LIMIT as usize {
        return Err(ConsoleError::status(400, format!("cancel at most {MAX_LIMIT} attempts at once")));
    }
    Ok(ids)
}

/// `GET /console/attempts/cancel?attempt[]=…`: what will be canceled, and
/// the reason to give, before anything changes.
pub async fn confirm_cancel(Signed { session, csrf, .. }: Signed, q: ConsoleQuery) -> Page {
    let raw = q.value("attempt[]");
    let ids = selected(raw.split(','))?;
    let body = html! {
        p { "These scheduled attempts will never run; each one's payment fails with "
            code { "retry_canceled" } " and " code { "payment.failed" } " is sent." }
        ul { @for id in &ids { li.mono { (id) } } }
        form method="post" action="/console/attempts/cancel" id="confirm-cancel"
            data-confirm={ "Cancel " (ids.len()) " attempt(s)? This cannot be undone." } {
            (csrf_field(&csrf))
            @for id in &ids { input type="hidden" name="attempt" value=(id); }
            fieldset {
                legend { "Reason (recorded with the cancellation and in the audit log)" }
                input name="reason" id="reason" required maxlength="500" size="60";
            }
            button.danger type="submit" id="confirm" { "Cancel " (ids.len()) " attempt(s)" }
            " " a href="/console/attempts" { "Keep them" }
        }
    };
    ok(layout::page("Cancel attempts", Some((&session, &csrf)), body))
}

/// `POST /console/attempts/cancel` (`attempt`…, `reason`*): each attempt
/// through the API's cancel, one by one; the page says how each went.
pub async fn cancel(State(st): State<AppState>, Posted(Signed { session, csrf, .. }, form): Posted) -> Page {
    let ids = selected(form.all("attempt").into_iter())?;
    let reason = form.get("reason").ok_or_else(|| ConsoleError::status(400, "give a reason"))?;
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in &ids {
        let done = svc::cancel(&st.ctx, &session.viewer, &session.actor, id, json!({ "reason": reason })).await;
        outcomes.push((id, done.map_err(|e| e.message)));
    }
    let canceled = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let body = html! {
        p.flash id="flash" { "Canceled " (canceled) " of " (ids.len()) " attempt(s)." }
        table {
            thead { tr { th { "Attempt" } th { "Outcome" } } }
            tbody { @for (id, r) in &outcomes {
                tr { td.mono { (id) } td { @match r {
                    Ok(a) => (badge(s(a, "status"))),
                    Err(message) => span.error { (message) },
                } } }
            } }
        }
        p { a href="/console/attempts" { "Back to the attempts" } }
    };
    ok(layout::page("Cancel attempts", Some((&session, &csrf)), body))
}
