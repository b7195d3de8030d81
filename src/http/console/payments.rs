//! Payments: the list and search (operators every merchant's, merchants
//! their own), and one payment's timeline: its transactions and attempts,
//! and for merchants its events and their deliveries, in time order.

use axum::extract::State;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, amount, badge, csrf_field, s, text, time};
use super::session::Signed;
use super::{ConsolePath, ConsoleQuery, Page, ok, query};
use crate::domain::PaymentStatus;
use crate::http::AppState;
use crate::service::{attempts, console, details, payments as svc, webhooks};

/// `GET /console/payments` (`query` searches ids, references, customers,
/// descriptions; else `status`; `merchant_id` for operators).
pub async fn list(State(st): State<AppState>, Signed { session, csrf, .. }: Signed, q: ConsoleQuery) -> Page {
    let operator = session.is_operator();
    let search = q.value("query");
    let list = if search.is_empty() {
        let names: &[&str] = if operator { &["status", "merchant_id"] } else { &["status"] };
        let (query, limit, offset) = q.pick(names);
        (svc::list(&st.ctx, &session.viewer, query).await?, limit, offset)
    } else {
        let names: &[&str] = if operator { &["query", "merchant_id"] } else { &["query"] };
        let (query, limit, offset) = q.pick(names);
        (svc::search(&st.ctx, &session.viewer, query).await?, limit, offset)
    };
    let (list, limit, offset) = list;
    let rows = list["data"].as_array().cloned().unwrap_or_default();
    let status = q.value("status");
    let params = vec![("query", search.clone()), ("status", status.clone()), ("merchant_id", q.value("merchant_id"))];
    let body = html! {
        form method="get" action="/console/payments" id="search" {
            fieldset {
                legend { "Search or filter" }
                input name="query" value=(search) placeholder="id, reference, customer or description" size="36"; " "
                label { "Status " select name="status" {
                    option value="" { "any" }
                    @for p in PaymentStatus::ALL { option value=(p.as_str()) selected[status == p.as_str()] { (p.as_str()) } }
                } } " "
                @if operator {
                    label { "Merchant " input name="merchant_id" value=(q.value("merchant_id")) placeholder="mer_…" size="20"; } " "
                }
                button type="submit" { "Search" }
            }
        }
        table id="payments" {
            thead { tr {
                th { "Payment" } @if operator { th { "Merchant" } } th { "Amount" } th { "Status" }
                th { "Description" } th { "Reference" } th { "Created" }
            } }
            tbody {
                @for p in &rows {
                    tr {
                        td.mono { a href={ "/console/payments/" (s(p, "id")) } { (s(p, "id")) } }
                        @if operator { td.mono { (text(p, "merchant_id")) } }
                        td { (amount(p, "amount")) }
                        td { (badge(s(p, "status"))) }
                        td { (text(p, "description")) }
                        td { (text(p, "reference")) }
                        td { (time(p, "created_at")) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" .muted { "No payments match." } } }
            }
        }
        (layout::pager("/console/payments", &params, &list, limit, offset))
    };
    ok(layout::page("Payments", Some((&session, &csrf)), body))
}

/// One line of the timeline: when, what, and its details.
struct Entry {
    at: Option<time::OffsetDateTime>,
    field: Value,
    kind: &'static str,
    line: Markup,
}

fn entry(v: &Value, field: &str, kind: &'static str, line: Markup) -> Entry {
    let at = v.get(field).and_then(Value::as_str).and_then(crate::timefmt::parse);
    Entry { at, field: serde_json::json!({ "t": v.get(field) }), kind, line }
}

/// `GET /console/payments/{id}`: the payment and what happened to it.
pub async fn timeline(
    State(st): State<AppState>,
    Signed { session, csrf, .. }: Signed,
    ConsolePath(id): ConsolePath,
) -> Page {
    let viewer = &session.viewer;
    let payment = serde_json::to_value(svc::retrieve(&st.ctx, viewer, &id).await?).unwrap_or_default();
    let page = query(&[("limit", "100")]);
    let txns = details::transactions(&st.ctx, viewer, &id, page.clone()).await?;
    let tries = attempts::of_payment(&st.ctx, viewer, &id, page.clone()).await?;
    // Events and deliveries are merchant objects: the API shows them to the
    // merchant's own keys only, and so does the console.
    let (events, deliveries) = match session.scope() {
        Ok(scope) if !session.is_operator() => {
            let q = query(&[("limit", "100"), ("payment_id", id.as_str())]);
            (webhooks::list_events(&st.ctx, &scope, q).await?, console::payment_deliveries(&st.ctx, &scope, &id).await?)
        }
        _ => (Value::Null, Value::Null),
    };
    let rows = |v: &Value| v["data"].as_array().cloned().unwrap_or_default();
    let mut entries = Vec::new();
    // Lists come newest first; read oldest first so that entries of one
    // instant keep their order through the (stable) sort.
    let oldest_first = |v: &Value| rows(v).into_iter().rev();
    for t in oldest_first(&txns) {
        let line = html! { (text(&t, "type")) " " (amount(&t, "amount")) " " (badge(s(&t, "status"))) " " span.muted { (text(&t, "error_code")) } };
        entries.push(entry(&t, "created_at", "transaction", line));
    }
    for a in oldest_first(&tries) {
        let line =
            html! { "#" (text(&a, "number")) " " (badge(s(&a, "status"))) " " span.muted { (text(&a, "error_code")) } };
        entries.push(entry(&a, "scheduled_at", "attempt", line));
    }
    for e in oldest_first(&events) {
        entries.push(entry(
            &e,
            "timestamp",
            "event",
            html! { code { (s(&e, "type")) } " " span.mono.muted { (s(&e, "id")) } },
        ));
    }
    for d in oldest_first(&deliveries) {
        let line = html! {
            a href={ "/console/deliveries/" (s(&d, "id")) } { (s(&d, "event_type")) } " → " span.mono { (s(&d, "endpoint_id")) }
            " " (badge(s(&d, "status"))) " " span.muted { (text(&d, "attempts")) " attempt(s)" }
        };
        entries.push(entry(&d, "created_at", "delivery", line));
    }
    entries.sort_by_key(|e| e.at);
    let body = html! {
        table id="payment" { tbody {
            tr { th { "Payment" } td.mono { (s(&payment, "id")) } }
            tr { th { "Amount" } td { (amount(&payment, "amount")) } }
            tr { th { "Status" } td { (badge(s(&payment, "status"))) " " span.muted { (text(&payment, "error_code")) } } }
            tr { th { "Captured / refunded" } td { (amount(&payment, "amount_captured")) " / " (amount(&payment, "amount_refunded")) } }
            tr { th { "Method" } td { (text(&payment, "payment_method_id")) " via " (text(&payment, "provider")) } }
            tr { th { "Description" } td id="description" { (text(&payment, "description")) } }
            tr { th { "Reference / customer" } td { (text(&payment, "reference")) " / " (text(&payment, "customer_id")) } }
            tr { th { "Metadata" } td { pre id="metadata" { (serde_json::to_string_pretty(&payment["metadata"]).unwrap_or_default()) } } }
            tr { th { "Created" } td { (time(&payment, "created_at")) } }
        } }
        h2 { "Timeline" }
        table id="timeline" {
            thead { tr { th { "When" } th { "What" } th { "" } } }
            tbody { @for e in &entries {
                tr class={ "t-" (e.kind) } { td { (time(&e.field, "t")) } td { (e.kind) } td { (e.line) } }
            } }
        }
        @if session.is_operator() {
            p.muted { "Events and webhook deliveries are shown to the merchant's own keys." }
        }
        @for a in rows(&tries).iter().filter(|a| s(a, "status") == "scheduled") {
            p { "Attempt " span.mono { (s(a, "id")) } " is scheduled. "
                a href={ "/console/attempts/cancel?attempt%5B%5D=" (s(a, "id")) } { "Cancel it…" } }
        }
        @if !rows(&deliveries).is_empty() {
            h2 { "Deliveries" }
            (deliveries_table(&rows(&deliveries), &csrf))
        }
    };
    ok(layout::page("Payment", Some((&session, &csrf)), body))
}

/// Deliveries, each with its attempts page and a retry button.
pub fn deliveries_table(rows: &[Value], csrf: &str) -> Markup {
    html! {
        table.deliveries {
            thead { tr { th { "Delivery" } th { "Event" } th { "Status" } th { "Attempts" } th { "Last answer" } th { "Created" } th { "" } } }
            tbody { @for d in rows {
                tr {
                    td.mono { a href={ "/console/deliveries/" (s(d, "id")) } { (s(d, "id")) } }
                    td { code { (s(d, "event_type")) } }
                    td { (badge(s(d, "status"))) }
                    td { (text(d, "attempts")) }
                    td { (text(d, "last_status_code")) " " span.muted { (text(d, "last_error")) } }
                    td { (time(d, "created_at")) }
                    td { form.inline method="post" action={ "/console/deliveries/" (s(d, "id")) "/retry" } {
                        (csrf_field(csrf)) button type="submit" { "Retry now" }
                    } }
                }
            } }
        }
    }
}
