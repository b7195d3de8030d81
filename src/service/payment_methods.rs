//! Payment methods (contract §5): a provider's token for a card or account,
//! stored per merchant and mode. payd never takes a card number: tokens that
//! look like one are refused.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::params::{Fields, Query, unknown_cursor};
use super::payments::REFERENCE_MAX;
use super::{ApiError, Ctx, ErrorCode, list_body, to_json};
use crate::db::payment_methods::{self as store, NewPaymentMethod, PaymentMethod};
use crate::db::provider_accounts;
use crate::domain::{MethodKind, PaymentMethodId, Scope};
use crate::provider::SandboxMethod;

/// Longest token.
pub const TOKEN_MAX: usize = 255;

/// True when `token` looks like a primary account number: 12 to 19 digits,
/// possibly grouped by spaces or dashes. Such a token is refused whether or
/// not its check digit is right: payd must never store one.
pub fn looks_like_card_number(token: &str) -> bool {
    let digits: Vec<u8> = token.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
    (12..=19).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
}

/// Parses `YYYY-MM` into (year, month).
fn parse_expiry(s: &str) -> Option<(i32, u8)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

/// True when a method that expires at the end of `expires_at` (`YYYY-MM`)
/// is expired on `today`. An unreadable value counts as expired.
pub fn is_expired(expires_at: &str, today: time::Date) -> bool {
    match parse_expiry(expires_at) {
        Some((y, m)) => (today.year(), u8::from(today.month())) > (y, m),
        None => true,
    }
}

fn parse_id(raw: &str) -> Result<PaymentMethodId, ApiError> {
    PaymentMethodId::parse(raw).ok_or_else(|| ApiError::not_found("payment method"))
}

/// `POST /v1/payment_methods`
pub async fn create(ctx: &Ctx, scope: &Scope, body: Value) -> Result<PaymentMethod, ApiError> {
    let mut f = Fields::new(body, &["provider", "token", "type", "expires_at", "customer_id"])?;
    let provider = f.string("provider", 64)?;
    let token = f.string("token", TOKEN_MAX)?;
    let kind = f.optional_string("type", 32)?.unwrap_or_else(|| "card".to_owned());
    let expires_at = f.optional_string("expires_at", 7)?;
    let customer_id = f.optional_string("customer_id", REFERENCE_MAX)?;
    if looks_like_card_number(&token) {
        return Err(ApiError::new(
            400,
            ErrorCode::CardNumberRefused,
            "token looks like a card number; payd takes only the provider's token for a card, never its number",
        )
        .with_param("token"));
    }
    let kind = MethodKind::parse(&kind)
        .ok_or_else(|| ApiError::invalid("type", format!("type must be one of {}", MethodKind::names())))?;
    if let Some(e) = &expires_at
        && parse_expiry(e).is_none()
    {
        return Err(ApiError::invalid("expires_at", "expires_at must be YYYY-MM"));
    }
    if !ctx.providers.serves(&provider, scope.livemode) {
        let why = if provider == "sandbox" {
            "the sandbox serves test mode only".to_owned()
        } else {
            format!("no provider named {provider} is configured")
        };
        return Err(ApiError::invalid("provider", why));
    }
    if provider == "sandbox" && SandboxMethod::parse_token(&token).is_none() {
        return Err(ApiError::invalid(
            "token",
            "sandbox tokens are tok_success, tok_decline, tok_insufficient_funds, tok_expired, tok_flaky, tok_unavailable or tok_async",
        ));
    }
    let mut conn = ctx.db.acquire().await?;
    // A method of a provider on the merchant's own account (Stripe) is
    // bound to that account: it is charged there and nowhere else.
    let provider_account_id = if ctx.providers.needs_account(&provider) {
        if !token.starts_with("pm_") || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ApiError::invalid("token", format!("a {provider} token is a PaymentMethod id (pm_…)")));
        }
        let account = provider_accounts::active(&mut conn, scope, &provider).await?;
        Some(account.ok_or_else(|| not_configured(&provider, scope.livemode))?)
    } else {
        None
    };
    let new = NewPaymentMethod { provider, kind, token, expires_at, customer_id, provider_account_id };
    Ok(store::insert(&mut conn, scope, &new).await?)
}

/// 422 `provider_not_configured`: the merchant has no account at
/// `provider` in this mode (contract §12).
pub fn not_configured(provider: &str, livemode: bool) -> ApiError {
    let mode = if livemode { "live" } else { "test" };
    ApiError::new(
        422,
        ErrorCode::ProviderNotConfigured,
        format!("connect a {provider} account in {mode} mode first (POST /v1/provider_accounts)"),
    )
    .with_param("payment_method_id")
}

/// `GET /v1/payment_methods/{id}`
pub async fn retrieve(ctx: &Ctx, scope: &Scope, id: &str) -> Result<PaymentMethod, ApiError> {
    let id = parse_id(id)?;
    let mut conn = ctx.db.acquire().await?;
    store::find(&mut conn, scope, &id).await?.ok_or_else(|| ApiError::not_found("payment method"))
}

/// `GET /v1/payment_methods` (`customer_id` and the paging parameters), newest first.
pub async fn list(ctx: &Ctx, scope: &Scope, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::list(query, &["customer_id"])?;
    let customer = q.string("customer_id");
    let (limit, cursor) = (q.limit()?, q.cursor(PaymentMethodId::parse, "a payment method id (pm_…)")?);
    let (rows, more, total) = store::list(&ctx.db, scope, customer.as_deref(), limit, &cursor)
        .await?
        .ok_or_else(|| unknown_cursor(&cursor, "payment method"))?;
    list_body(&rows, more, total)
}

/// `DELETE /v1/payment_methods/{id}`: new payments can no longer use it.
pub async fn delete(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let mut conn = ctx.db.acquire().await?;
    if !store::delete(&mut conn, scope, &id).await? {
        return Err(ApiError::not_found("payment method"));
    }
    to_json(&json!({"id": id, "object": "payment_method", "deleted": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_recognised_in_any_grouping() {
        for pan in
            ["4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "378282246310005", "4000056655665556123"]
        {
            assert!(looks_like_card_number(pan), "{pan}");
        }
        for token in ["tok_visa", "tok_success", "12345", "4242424242424242x", "btok_4242424242424242"] {
            assert!(!looks_like_card_number(token), "{token}");
        }
    }

    #[test]
    fn a_method_works_until_the_end_of_its_month() {
        let d = |y, m: u8, day| time::Date::from_calendar_date(y, m.try_into().unwrap(), day).unwrap();
        assert!(!is_expired("2026-11", d(2026, 11, 30)));
        assert!(is_expired("2026-11", d(2026, 12, 1)));
        assert!(is_expired("2025-12", d(2026, 1, 1)));
        assert!(!is_expired("2027-01", d(2026, 12, 31)));
        assert!(is_expired("2026-13", d(2020, 1, 1)));
        assert_eq!(parse_expiry("26-11"), None);
    }
}
