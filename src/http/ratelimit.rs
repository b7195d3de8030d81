//! Rate limits per API key (contract §9: `rate_limit.per_minute`,
//! `rate_limit.burst`; `0` turns them off): a key may send `burst` requests
//! at once and then `per_minute` per minute, counted for the whole
//! deployment (contract §11) in a bucket every api process shares
//! ([`crate::service::ratelimit`]). A per-process governor bucket with the
//! same quota comes first: a flood from one key is refused here without a
//! database round trip, and it decides alone while PostgreSQL is away.
//!
//! Every limited answer carries `X-RateLimit-Limit` (requests per minute),
//! `X-RateLimit-Remaining` (requests that may be sent at once right now) and
//! `X-RateLimit-Reset` (seconds until one more may be sent); a refused one is
//! 429 `rate_limit_error` with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimitSettings;
use crate::domain::bearer_key;
use crate::service::ratelimit::{self, Decision};
use crate::service::{ApiError, Ctx, ErrorCode};

type Limiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

/// Forget keys idle long enough to be full again, every this many requests,
/// so random keys cannot grow the table without bound.
const SWEEP_EVERY: u64 = 10_000;

/// The per-key limiter; off when either setting is 0.
#[derive(Clone)]
pub struct RateLimit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    limiter: Limiter,
    per_minute: u32,
    burst: u32,
    seen: AtomicU64,
    /// Where the shared buckets are; `None` decides per process only.
    ctx: Option<Ctx>,
}

impl RateLimit {
    /// A limiter from the settings, sharing its buckets through `ctx`.
    pub fn new(settings: &RateLimitSettings, ctx: Option<Ctx>) -> Self {
        let (Some(rate), Some(burst)) = (NonZeroU32::new(settings.per_minute), NonZeroU32::new(settings.burst)) else {
            return Self::off();
        };
        let limiter = governor::RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
            .with_middleware::<StateInformationMiddleware>();
        let inner = Inner { limiter, per_minute: rate.get(), burst: burst.get(), seen: AtomicU64::new(0), ctx };
        Self { inner: Some(Arc::new(inner)) }
    }

    /// No limits.
    pub fn off() -> Self {
        Self { inner: None }
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(name, HeaderValue::from(value));
}

/// The middleware: counts the request against its key, or answers 429.
/// The bucket is the key as authentication parses it, so every spelling of
/// one key shares it; requests without a parsable key pass (authentication
/// answers them 401 without a lookup that could be worth limiting).
pub async fn enforce(State(rl): State<RateLimit>, req: Request, next: Next) -> Response {
    let Some(inner) = rl.inner.as_ref() else { return next.run(req).await };
    let parsed = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_key);
    let Some(key) = parsed.map(str::to_owned) else {
        return next.run(req).await;
    };
    if inner.seen.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
        inner.limiter.retain_recent();
        if let Some(ctx) = inner.ctx.clone() {
            tokio::spawn(async move { ratelimit::purge(&ctx).await });
        }
    }
    let local = inner.limiter.check_key(&key);
    let decision = match (&local, &inner.ctx) {
        (Err(not_until), _) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client that waits this long gets through.
            Decision { allowed: false, remaining: 0, retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        }
        (Ok(state), Some(ctx)) => match ratelimit::take(ctx, &key, inner.per_minute, inner.burst).await {
            Some(shared) => shared,
            None => Decision { allowed: true, remaining: state.remaining_burst_capacity().into(), retry_after: 0 },
        },
        (Ok(state), None) => {
            Decision { allowed: true, remaining: state.remaining_burst_capacity().into(), retry_after: 0 }
        }
    };
    if decision.allowed {
        let mut resp = next.run(req).await;
        let h = resp.headers_mut();
        set(h, "x-ratelimit-limit", inner.per_minute.into());
        set(h, "x-ratelimit-remaining", decision.remaining);
        set(h, "x-ratelimit-reset", 0);
        return resp;
    }
    let secs = decision.retry_after.max(1);
    let mut resp =
        ApiError::new(429, ErrorCode::RateLimited, format!("too many requests for this key; retry in {secs} s"))
            .into_response();
    let h = resp.headers_mut();
    set(h, "retry-after", secs);
    set(h, "x-ratelimit-limit", inner.per_minute.into());
    set(h, "x-ratelimit-remaining", 0);
    set(h, "x-ratelimit-reset", secs);
    resp
}
