//! The page frame and the small formatters every page uses. Markup is
//! built with `maud`, which escapes every interpolated value: user data
//! (descriptions, metadata, URLs, error messages) can never become markup.
//! The only unescaped text is the constant CSS and script below, which the
//! Content-Security-Policy allows by hash (no inline script runs otherwise).

use std::sync::LazyLock;

use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::Currency;
use crate::service::console::Session;

/// The console's whole style sheet: small, and inline so there is no asset
/// to serve, cache or keep in sync.
const CSS: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232b;background:#f5f6f8}\
header{background:#1d2b3a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#cfe3ff;text-decoration:none}header strong{margin-right:1em}\
header form{margin-left:auto}main{padding:1em 1.2em;max-width:80em}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0 1.2em}\
th,td{border-bottom:1px solid #e1e4e8;padding:.35em .5em;text-align:left;vertical-align:top}\
th{background:#eef1f4;font-weight:600}code,.mono{font-family:ui-monospace,monospace;font-size:.92em}\
.badge{display:inline-block;padding:0 .45em;border-radius:.6em;background:#e1e4e8;font-size:.88em}\
.s-succeeded,.s-enabled,.s-healthy{background:#d3f5dc}.s-failed,.s-disabled,.s-canceled{background:#fbd9d9}\
.s-scheduled,.s-pending,.s-running,.s-failing{background:#fdf0c4}\
.flash{background:#e6f4ea;border:1px solid #b7e1c1;padding:.5em .8em}.error{background:#fdecea;border:1px solid #f5c2c0;padding:.5em .8em}\
.todo{background:#fff;border:1px dashed #9aa4b1;padding:.5em .8em;color:#55606e}\
form.inline{display:inline}fieldset{border:1px solid #d0d5db;background:#fff;margin:.6em 0}\
input,select,button{font:inherit}button{cursor:pointer}.danger{background:#b42318;color:#fff;border:0;padding:.3em .8em}\
.pager{display:flex;gap:1em}.muted{color:#6a737d}pre{white-space:pre-wrap;word-break:break-all;margin:0}";

/// Progressive enhancement only (every page works without it): times in
/// the viewer's own time zone, a confirmation dialog before a destructive
/// submit, and "select all" for the attempts list.
const SCRIPT: &str = "\
document.querySelectorAll('time[datetime]').forEach(function(t){var d=new Date(t.getAttribute('datetime'));\
if(!isNaN(d)){t.title=t.getAttribute('datetime');t.textContent=d.toLocaleString();}});\
document.querySelectorAll('form[data-confirm]').forEach(function(f){f.addEventListener('submit',function(e){\
if(!window.confirm(f.getAttribute('data-confirm'))){e.preventDefault();}});});\
var all=document.getElementById('select-all');if(all){all.addEventListener('change',function(){\
document.querySelectorAll('input[name=attempt]').forEach(function(c){c.checked=all.checked;});});}";

fn sha256_source(source: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(source.as_bytes())))
}

/// The Content-Security-Policy of every console page: nothing from
/// elsewhere, and only the console's own inline style and script (by hash).
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'self'; script-src {}; style-src {}; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        sha256_source(SCRIPT),
        sha256_source(CSS)
    )
});

/// A whole page: the header with the viewer's links, then `body`.
pub fn page(title: &str, session: Option<(&Session, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · payd console" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    strong { "payd console" }
                    @if let Some((s, csrf)) = session {
                        @if s.is_operator() {
                            a href="/console/attempts" { "Attempts" }
                            a href="/console/payments" { "Payments" }
                            a href="/console/endpoints" { "Endpoints" }
                            a href="/console/holds" { "Holds" }
                            a href="/console/transactions" { "Unknown transactions" }
                        } @else {
                            a href="/console/payments" { "Payments" }
                            a href="/console/endpoints" { "Endpoints" }
                        }
                        form method="post" action="/console/sign_out" {
                            (csrf_field(csrf))
                            span.muted { (viewer_label(s)) " " }
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn viewer_label(s: &Session) -> String {
    match &s.principal.merchant_id {
        Some(m) => format!("{m} ({})", if s.principal.livemode { "live" } else { "test" }),
        None => "operator".to_owned(),
    }
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A string field of an API object, or "".
pub fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// A field shown as text: strings as they are, other values as JSON, null as "—".
pub fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A status as a coloured badge.
pub fn badge(status: &str) -> Markup {
    html! { span class={ "badge s-" (status) } { (status) } }
}

/// An RFC 3339 time in UTC, which the script shows in the viewer's zone.
pub fn time(v: &Value, field: &str) -> Markup {
    match v.get(field).and_then(Value::as_str) {
        Some(t) => html! { time datetime=(t) { (t) } },
        None => html! { span.muted { "—" } },
    }
}

/// An amount in minor units, written with its currency's decimals
/// (USD 1234 → "12.34 USD", JPY 1234 → "1234 JPY", KWD 1234 → "1.234 KWD").
pub fn money(minor: i64, currency: &str) -> String {
    let exponent = Currency::parse(currency).map_or(2, Currency::exponent);
    let (sign, abs) = if minor < 0 { ("-", minor.unsigned_abs()) } else { ("", minor.unsigned_abs()) };
    if exponent == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let unit = 10u64.pow(u32::from(exponent));
    let width = usize::from(exponent);
    format!("{sign}{}.{:0width$} {currency}", abs / unit, abs % unit)
}

/// An amount field of an object with its `currency`.
pub fn amount(v: &Value, field: &str) -> String {
    money(v.get(field).and_then(Value::as_i64).unwrap_or(0), s(v, "currency"))
}

/// Previous / next links of a list answered by the API (`has_more`,
/// `total_count`), keeping the page's other query parameters.
pub fn pager(path: &str, params: &[(&str, String)], list: &Value, limit: i64, offset: i64) -> Markup {
    let total = list["total_count"].as_i64().unwrap_or(0);
    let more = list["has_more"].as_bool().unwrap_or(false);
    let link = |offset: i64| {
        let mut q: Vec<(&str, String)> = params.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
        q.push(("limit", limit.to_string()));
        q.push(("offset", offset.to_string()));
        format!("{path}?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
    };
    let shown = list["data"].as_array().map_or(0, Vec::len) as i64;
    html! {
        div.pager {
            span.muted { (if shown == 0 { 0 } else { offset + 1 }) "–" (offset + shown) " of " (total) }
            @if offset > 0 { a href=(link((offset - limit).max(0))) rel="prev" { "← Previous" } }
            @if more { a href=(link(offset + limit)) rel="next" id="next-page" { "Next →" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_the_currency_minor_units() {
        assert_eq!(money(1234, "USD"), "12.34 USD");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(1234, "JPY"), "1234 JPY");
        assert_eq!(money(1234, "KWD"), "1.234 KWD");
        assert_eq!(money(-250, "USD"), "-2.50 USD");
    }

    #[test]
    fn user_data_is_escaped() {
        let v = serde_json::json!({"description": "<script>alert(1)</script>\"'&"});
        let out = html! { p title=(text(&v, "description")) { (text(&v, "description")) } }.into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;") && out.contains("&quot;"), "{out}");
    }
}
