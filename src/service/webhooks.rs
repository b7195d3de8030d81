//! Webhook endpoint and event use cases.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::params::{Fields, Query, unknown_cursor};
use super::{ApiError, Ctx, ErrorCode, list_body, to_json};
use crate::db::event_feed::{self, EventFilter};
use crate::db::{events, webhooks};
use crate::domain::{DeliveryId, DeliveryStatus, EndpointId, EndpointStatus, EventId, EventType, PaymentId, Scope};
use crate::{target, webhooks as signing};

/// Longest endpoint `url`.
pub const URL_MAX: usize = 2048;
/// Longest endpoint `description`.
pub const DESCRIPTION_MAX: usize = 1000;

fn parse_endpoint_id(raw: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(raw).ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// Checks a URL for a tenant: shape, https in live mode, and the SSRF guard.
async fn check_url(ctx: &Ctx, scope: &Scope, raw: &str) -> Result<String, ApiError> {
    let url = target::parse_url(raw, scope.livemode).map_err(|e| match e {
        target::TargetError::HttpsRequired => {
            ApiError::new(422, ErrorCode::UrlNotAllowed, e.to_string()).with_param("url")
        }
        _ => ApiError::invalid("url", e.to_string()),
    })?;
    target::check(&url, ctx.settings.webhooks.allow_private_targets)
        .await
        .map_err(|e| ApiError::new(422, ErrorCode::UrlNotAllowed, e.to_string()).with_param("url"))?;
    Ok(url.to_string())
}

fn check_events(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid("enabled_events", "enabled_events must not be empty"));
    }
    if let Some(bad) = list.iter().find(|t| t.as_str() != "*" && EventType::parse(t).is_none()) {
        return Err(ApiError::invalid("enabled_events", format!("unknown event type: {bad}")));
    }
    let mut list = list;
    list.sort();
    list.dedup();
    Ok(list)
}

/// Most deliveries per second a throttle may allow.
pub const RATE_LIMIT_MAX: i64 = 10_000;

/// `rate_limit`: deliveries per second, 1 to [`RATE_LIMIT_MAX`].
fn rate_limit(f: &mut Fields) -> Result<Option<i32>, ApiError> {
    Ok(f.optional_integer("rate_limit", 1, RATE_LIMIT_MAX)?.map(|n| n as i32))
}

/// `POST /v1/webhook_endpoints`: the answer is the only one showing `secret`.
pub async fn create_endpoint(ctx: &Ctx, scope: &Scope, body: Value) -> Result<Value, ApiError> {
    let mut f = Fields::new(body, &["url", "enabled_events", "description", "metadata", "rate_limit"])?;
    let url = f.string("url", URL_MAX)?;
    let rate_limit = rate_limit(&mut f)?;
    let enabled_events = check_events(f.strings("enabled_events")?)?;
    let description = f.optional_string("description", DESCRIPTION_MAX)?;
    let metadata = f.metadata("metadata")?;
    let url = check_url(ctx, scope, &url).await?;
    let mut conn = ctx.db.acquire().await?;
    let (id, secret) = (EndpointId::generate(), signing::generate_secret());
    let sealed_secret = ctx.secrets.seal(id.as_str(), &secret);
    let new = webhooks::NewEndpoint { id, url, enabled_events, description, metadata, sealed_secret, rate_limit };
    let max = ctx.settings.webhooks.max_endpoints;
    let mut endpoint = webhooks::create(&mut conn, scope, new, max).await?.ok_or_else(|| {
        ApiError::new(
            422,
            ErrorCode::EndpointLimitReached,
            format!("at most {max} webhook endpoints per merchant and mode; delete one first"),
        )
    })?;
    endpoint.secret = Some(secret);
    to_json(&endpoint)
}

/// `GET /v1/webhook_endpoints/{id}`
pub async fn retrieve_endpoint(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = parse_endpoint_id(id)?;
    let endpoint = webhooks::find(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    to_json(&endpoint)
}

/// `GET /v1/webhook_endpoints`
pub async fn list_endpoints(ctx: &Ctx, scope: &Scope, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let mut q = Query::list(query, &[])?;
    let (limit, cursor) = (q.limit()?, q.cursor(EndpointId::parse, "a webhook endpoint id (we_…)")?);
    let (rows, more, total) = webhooks::list(&ctx.db, scope, limit, &cursor)
        .await?
        .ok_or_else(|| unknown_cursor(&cursor, "webhook endpoint"))?;
    list_body(&rows, more, total)
}

/// `POST /v1/webhook_endpoints/{id}`: url, enabled_events, status, description.
pub async fn update_endpoint(ctx: &Ctx, scope: &Scope, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = parse_endpoint_id(id)?;
    let mut f = Fields::new(body, &["url", "enabled_events", "status", "description", "rate_limit"])?;
    let url = f.optional_string("url", URL_MAX)?;
    // Given as null: the throttle is removed.
    let rate_limit = if f.is_null("rate_limit") { Some(None) } else { rate_limit(&mut f)?.map(Some) };
    let enabled_events = match f.optional_strings("enabled_events")? {
        Some(list) => Some(check_events(list)?),
        None => None,
    };
    let status = match f.optional_string("status", 16)? {
        None => None,
        Some(s) => Some(
            EndpointStatus::parse(&s)
                .ok_or_else(|| ApiError::invalid("status", "status must be enabled or disabled"))?,
        ),
    };
    let description = f.optional_string("description", DESCRIPTION_MAX)?;
    let url = match url {
        Some(u) => Some(check_url(ctx, scope, &u).await?),
        None => None,
    };
    let update = webhooks::EndpointUpdate { url, enabled_events, status, description, rate_limit };
    let endpoint =
        webhooks::update(&ctx.db, scope, &id, update).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    to_json(&endpoint)
}

/// Longest `expire_previous_in`: a week.
pub const EXPIRE_PREVIOUS_MAX_SECS: i64 = 7 * 86_400;

/// `POST /v1/webhook_endpoints/{id}/rotate_secret`: a new secret; the old one
/// keeps signing (second) for `expire_previous_in` seconds (default a day).
pub async fn rotate_secret(ctx: &Ctx, scope: &Scope, id: &str, body: Value) -> Result<Value, ApiError> {
    let id = parse_endpoint_id(id)?;
    let mut f = Fields::new(body, &["expire_previous_in"])?;
    let seconds = f.optional_integer("expire_previous_in", 0, EXPIRE_PREVIOUS_MAX_SECS)?.unwrap_or(86_400);
    let expire = std::time::Duration::from_secs(seconds.unsigned_abs());
    let secret = signing::generate_secret();
    let mut endpoint = webhooks::rotate_secret(&ctx.db, scope, &id, &ctx.secrets.seal(id.as_str(), &secret), expire)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    endpoint.secret = Some(secret);
    to_json(&endpoint)
}

/// Seals the secrets of endpoints made before secrets were sealed; run at
/// start. Answers how many endpoints it sealed.
pub async fn seal_plain_secrets(ctx: &Ctx) -> Result<usize, ApiError> {
    let mut sealed = 0;
    loop {
        let batch = webhooks::plain_secrets(&ctx.db, 500).await?;
        if batch.is_empty() {
            return Ok(sealed);
        }
        let mut progressed = false;
        for (id, secret, previous) in &batch {
            let seal = |s: &str| {
                if crate::secretbox::SecretBox::is_plain(s) { ctx.secrets.seal(id.as_str(), s) } else { s.to_owned() }
            };
            let (new, new_previous) = (seal(secret), previous.as_deref().map(seal));
            if webhooks::seal_secrets(&ctx.db, id, (secret, previous.as_deref()), (&new, new_previous.as_deref()))
                .await?
            {
                sealed += 1;
                progressed = true;
            }
        }
        if !progressed {
            return Ok(sealed);
        }
    }
}

/// `POST /v1/webhook_deliveries/{id}/retry`: due now, sent again (202).
pub async fn retry_delivery(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    let delivery =
        webhooks::retry_now(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    to_json(&delivery)
}

/// `DELETE /v1/webhook_endpoints/{id}`
pub async fn delete_endpoint(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = parse_endpoint_id(id)?;
    if !webhooks::delete(&ctx.db, scope, &id).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(json!({"id": id, "object": "webhook_endpoint", "deleted": true}))
}

/// `GET /v1/webhook_endpoints/{id}/deliveries`
pub async fn list_deliveries(
    ctx: &Ctx,
    scope: &Scope,
    id: &str,
    query: HashMap<String, String>,
) -> Result<Value, ApiError> {
    let id = parse_endpoint_id(id)?;
    let mut q = Query::list(query, &["status"])?;
    let status = q.parsed("status", DeliveryStatus::parse, DeliveryStatus::names)?;
    let (limit, cursor) = (q.limit()?, q.cursor(DeliveryId::parse, "a webhook delivery id (whd_…)")?);
    webhooks::find(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let (rows, more, total) = webhooks::deliveries(&ctx.db, &id, status, limit, &cursor)
        .await?
        .ok_or_else(|| unknown_cursor(&cursor, "webhook delivery"))?;
    list_body(&rows, more, total)
}

/// `GET /v1/events/{id}`
pub async fn retrieve_event(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = EventId::parse(id).ok_or_else(|| ApiError::not_found("event"))?;
    let event = events::find(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    to_json(&event)
}

/// `POST /v1/events/{id}/expunge`: the event's data becomes `{}` and it
/// says `"expunged": true`; deliveries not sent yet carry `{}` too.
pub async fn expunge_event(ctx: &Ctx, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let id = EventId::parse(id).ok_or_else(|| ApiError::not_found("event"))?;
    to_json(&events::expunge(&ctx.db, scope, &id).await?.ok_or_else(|| ApiError::not_found("event"))?)
}

/// `GET /v1/events`: newest first; `type` or `types[]` (several, repeated
/// or comma-separated), `payment_id`, `created[gte]`, `created[lt]`,
/// `delivery_success`, and `offset` or a cursor (`starting_after` /
/// `ending_before`, an event id), which stays stable while events arrive.
pub async fn list_events(ctx: &Ctx, scope: &Scope, query: HashMap<String, String>) -> Result<Value, ApiError> {
    let filters = ["type", "types[]", "types", "payment_id", "created[gte]", "created[lt]", "delivery_success"];
    let mut q = Query::list(query, &filters)?;
    let mut types = Vec::new();
    for name in ["type", "types[]", "types"] {
        for t in q.string(name).iter().flat_map(|v| v.split(',')) {
            let kind = EventType::parse(t.trim())
                .ok_or_else(|| ApiError::invalid(name, format!("{name} must be among {}", EventType::names())))?;
            types.push(kind);
        }
    }
    let payment = q
        .string("payment_id")
        .map(|p| {
            PaymentId::parse(&p)
                .ok_or_else(|| ApiError::invalid("payment_id", "payment_id must be a payment id (pay_…)"))
        })
        .transpose()?;
    let delivery_success = match q.string("delivery_success").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::invalid("delivery_success", "delivery_success must be true or false")),
    };
    let (created_gte, created_lt) = (q.timestamp("created[gte]")?, q.timestamp("created[lt]")?);
    let limit = q.limit()?;
    let cursor = q.cursor(EventId::parse, "an event id (evt_…)")?;
    let filter = EventFilter {
        types: (!types.is_empty()).then_some(types),
        payment,
        created_gte,
        created_lt,
        delivery_success,
        limit,
        cursor,
    };
    let (rows, has_more, total) =
        event_feed::page(&ctx.db, scope, &filter).await?.ok_or_else(|| unknown_cursor(&filter.cursor, "event"))?;
    list_body(&rows, has_more, total)
}
