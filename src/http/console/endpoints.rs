//! Webhook endpoints and their health: operators see every merchant's
//! (read-only); merchants their own, with stats, deliveries and their
//! attempts, retrying a delivery, recovering an endpoint (§13) and test sends.

use axum::extract::State;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::csrf::Posted;
use super::layout::{self, badge, csrf_field, s, text, time};
use super::payments::deliveries_table;
use super::session::Signed;
use super::{ConsolePath, ConsoleQuery, Page, ok};
use crate::domain::{DeliveryStatus, EventType};
use crate::http::AppState;
use crate::service::{console, webhook_tools as tools, webhooks as svc};

/// How an endpoint is doing, from its health fields.
fn health(e: &Value) -> Markup {
    if s(e, "status") == "disabled" {
        return html! { (badge("disabled")) " " span.muted { (text(e, "disabled_reason")) " since " (time(e, "disabled_at")) } };
    }
    match e.get("failing_since").and_then(Value::as_str) {
        Some(_) => html! { (badge("failing")) " since " (time(e, "failing_since")) },
        None => badge("healthy"),
    }
}

fn stats_line(st: &Value) -> Markup {
    html! {
        span { (text(st, "succeeded")) " ok · " (text(st, "failed")) " failed · " (text(st, "pending")) " pending" }
        span.muted { " · p50 " (text(&st["latency_ms"], "p50")) " ms · p99 " (text(&st["latency_ms"], "p99")) " ms" }
    }
}

/// `GET /console/endpoints`
pub async fn list(State(st): State<AppState>, Signed { session, csrf, .. }: Signed, q: ConsoleQuery) -> Page {
    let (query, limit, offset) = q.pick(&[]);
    let body = if session.is_operator() {
        let list = console::all_endpoints(&st.ctx, &session.viewer, limit.clamp(1, 100), offset.max(0)).await?;
        let rows = list["data"].as_array().cloned().unwrap_or_default();
        html! {
            p.muted { "Every merchant's endpoints, failing and disabled ones first." }
            table id="endpoints" {
                thead { tr { th { "Endpoint" } th { "Merchant" } th { "URL" } th { "Health" } th { "Created" } } }
                tbody { @for e in &rows { tr {
                    td.mono { (s(e, "id")) } td.mono { (s(e, "merchant_id")) } td.mono { (s(e, "url")) }
                    td { (health(e)) } td { (time(e, "created_at")) }
                } } }
            }
            (layout::pager("/console/endpoints", &[], &list, limit, offset))
        }
    } else {
        let scope = session.scope()?;
        let list = svc::list_endpoints(&st.ctx, &scope, query).await?;
        let rows = list["data"].as_array().cloned().unwrap_or_default();
        let mut stats = Vec::with_capacity(rows.len());
        for e in &rows {
            stats.push(tools::stats(&st.ctx, &scope, s(e, "id")).await?);
        }
        html! {
            table id="endpoints" {
                thead { tr { th { "Endpoint" } th { "URL" } th { "Health" } th { "Last 24 hours" } } }
                tbody { @for (e, st) in rows.iter().zip(&stats) { tr {
                    td.mono { a href={ "/console/endpoints/" (s(e, "id")) } { (s(e, "id")) } }
                    td.mono { (s(e, "url")) } td { (health(e)) } td { (stats_line(st)) }
                } } }
            }
            (layout::pager("/console/endpoints", &[], &list, limit, offset))
        }
    };
    ok(layout::page("Endpoints", Some((&session, &csrf)), body))
}

fn now_minus(hours: i64) -> String {
    crate::timefmt::format(time::OffsetDateTime::now_utc() - time::Duration::hours(hours))
}

/// `GET /console/endpoints/{id}` (`status`, `limit`, `offset` of its deliveries).
pub async fn detail(
    State(st): State<AppState>,
    Signed { session, csrf, .. }: Signed,
    ConsolePath(id): ConsolePath,
    q: ConsoleQuery,
) -> Page {
    let scope = session.scope()?;
    let endpoint = svc::retrieve_endpoint(&st.ctx, &scope, &id).await?;
    let stats = tools::stats(&st.ctx, &scope, &id).await?;
    let (query, limit, offset) = q.pick(&["status"]);
    let deliveries = svc::list_deliveries(&st.ctx, &scope, &id, query).await?;
    let rows = deliveries["data"].as_array().cloned().unwrap_or_default();
    let status = q.value("status");
    let path = format!("/console/endpoints/{id}");
    let body = html! {
        table id="endpoint" { tbody {
            tr { th { "Endpoint" } td.mono { (s(&endpoint, "id")) } }
            tr { th { "URL" } td.mono { (s(&endpoint, "url")) } }
            tr { th { "Health" } td id="health" { (health(&endpoint)) } }
            tr { th { "Events" } td { (text(&endpoint, "enabled_events")) } }
            tr { th { "Last 24 hours" } td { (stats_line(&stats)) } }
        } }
        fieldset {
            legend { "Recover: send again every failed delivery created in a window" }
            form method="get" action={ (path) "/recover" } id="recover" {
                label { "Since " input name="since" value=(now_minus(24)) size="28"; } " "
                label { "Until " input name="until" value=(now_minus(0)) size="28"; } " "
                label { input type="checkbox" name="include_missed" value="true"; " and the events missed while disabled" } " "
                button type="submit" { "Recover…" }
            }
        }
        fieldset {
            legend { "Test send: a signed example event, at once" }
            form method="post" action={ (path) "/test" } id="test-send" {
                (csrf_field(&csrf))
                select name="type" { @for t in EventType::ALL { option value=(t.as_str()) selected[*t == EventType::PaymentSucceeded] { (t.as_str()) } } }
                " " button type="submit" { "Send test event" }
            }
        }
        h2 { "Deliveries" }
        form method="get" action=(path) {
            select name="status" {
                option value="" { "any status" }
                @for d in DeliveryStatus::ALL { option value=(d.as_str()) selected[status == d.as_str()] { (d.as_str()) } }
            }
            " " button type="submit" { "Show" }
        }
        (deliveries_table(&rows, &csrf))
        (layout::pager(&path, &[("status", status.clone())], &deliveries, limit, offset))
    };
    ok(layout::page("Endpoint", Some((&session, &csrf)), body))
}

/// `GET /console/endpoints/{id}/recover?since=…`: what a recovery will do.
pub async fn confirm_recover(
    State(st): State<AppState>,
    Signed { session, csrf, .. }: Signed,
    ConsolePath(id): ConsolePath,
    q: ConsoleQuery,
) -> Page {
    let scope = session.scope()?;
    svc::retrieve_endpoint(&st.ctx, &scope, &id).await?;
    let (since, until, missed) = (q.value("since"), q.value("until"), q.value("include_missed") == "true");
    let body = html! {
        p { "Every failed delivery of " span.mono { (id) } " created from " code { (since) } " to "
            code { (if until.is_empty() { "now" } else { until.as_str() }) } " will be sent again"
            @if missed { ", and the events it missed while disabled" } "." }
        form method="post" action={ "/console/endpoints/" (id) "/recover" } id="confirm-recover"
            data-confirm="Send these deliveries again?" {
            (csrf_field(&csrf))
            input type="hidden" name="since" value=(since);
            input type="hidden" name="until" value=(until);
            @if missed { input type="hidden" name="include_missed" value="true"; }
            button.danger type="submit" id="confirm" { "Recover" }
            " " a href={ "/console/endpoints/" (id) } { "Back" }
        }
    };
    ok(layout::page("Recover endpoint", Some((&session, &csrf)), body))
}

/// `POST /console/endpoints/{id}/recover` (`since`*, `until`, `include_missed`).
pub async fn recover(State(st): State<AppState>, ConsolePath(id): ConsolePath, Posted(signed, form): Posted) -> Page {
    let scope = signed.session.scope()?;
    let mut body = json!({ "since": form.get("since").unwrap_or("") });
    if let Some(until) = form.get("until") {
        body["until"] = json!(until);
    }
    if form.get("include_missed") == Some("true") {
        body["include_missed"] = json!(true);
    }
    let r = tools::recover(&st.ctx, &scope, &id, body).await?;
    let page = html! {
        p.flash id="flash" { "Recovery " span.mono id="recovery" { (s(&r, "id")) } " is " (s(&r, "status"))
            ": " (text(&r, "deliveries")) " delivery(ies) to send." }
        p { a href={ "/console/endpoints/" (id) } { "Back to the endpoint" } }
    };
    ok(layout::page("Recover endpoint", Some((&signed.session, &signed.csrf)), page))
}

/// `POST /console/endpoints/{id}/test` (`type`).
pub async fn test_send(State(st): State<AppState>, ConsolePath(id): ConsolePath, Posted(signed, form): Posted) -> Page {
    let scope = signed.session.scope()?;
    let body = form.get("type").map_or(json!({}), |t| json!({ "type": t }));
    let r = tools::test_send(&st.ctx, &scope, &id, body).await?;
    let page = html! {
        @if r["delivered"].as_bool() == Some(true) {
            p.flash id="flash" { "Delivered: HTTP " (text(&r, "status_code")) " in " (text(&r, "duration_ms")) " ms." }
        } @else {
            p.error id="flash" { "Not delivered: " (text(&r, "error")) " (HTTP " (text(&r, "status_code")) ")" }
        }
        p { a href={ "/console/endpoints/" (id) } { "Back to the endpoint" } }
    };
    ok(layout::page("Test send", Some((&signed.session, &signed.csrf)), page))
}

/// `GET /console/deliveries/{id}`: each send with the receiver's answer.
pub async fn delivery(
    State(st): State<AppState>,
    Signed { session, csrf, .. }: Signed,
    ConsolePath(id): ConsolePath,
    q: ConsoleQuery,
) -> Page {
    let scope = session.scope()?;
    let (query, limit, offset) = q.pick(&[]);
    let list = tools::attempts(&st.ctx, &scope, &id, query).await?;
    let rows = list["data"].as_array().cloned().unwrap_or_default();
    let body = html! {
        form method="post" action={ "/console/deliveries/" (id) "/retry" } id="retry" {
            (csrf_field(&csrf)) span.mono { (id) } " " button type="submit" { "Retry now" }
        }
        table id="delivery-attempts" {
            thead { tr { th { "When" } th { "Outcome" } th { "HTTP" } th { "Duration" } th { "Error" } th { "Answer" } } }
            tbody { @for a in &rows { tr {
                td { (time(a, "created_at")) } td { (badge(s(a, "status"))) } td { (text(a, "status_code")) }
                td { (text(a, "duration_ms")) " ms" } td { (text(a, "error")) } td { pre { (text(a, "response_body")) } }
            } } }
        }
        (layout::pager(&format!("/console/deliveries/{id}"), &[], &list, limit, offset))
    };
    ok(layout::page("Delivery", Some((&session, &csrf)), body))
}

/// `POST /console/deliveries/{id}/retry`: due now, sent again.
pub async fn retry(State(st): State<AppState>, ConsolePath(id): ConsolePath, Posted(signed, _): Posted) -> Page {
    let scope = signed.session.scope()?;
    let d = svc::retry_delivery(&st.ctx, &scope, &id).await?;
    let page = html! {
        p.flash id="flash" { "Delivery " span.mono { (id) } " is " (s(&d, "status")) " and will be sent again now." }
        p { a href={ "/console/deliveries/" (id) } { "Its attempts" } " · "
            a href={ "/console/endpoints/" (s(&d, "endpoint_id")) } { "Its endpoint" } }
    };
    ok(layout::page("Retry delivery", Some((&signed.session, &signed.csrf)), page))
}
