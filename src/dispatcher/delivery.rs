//! One send of one delivery, and what follows from its result.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::limits::Answer;
use crate::config::WebhookSettings;
use crate::db::dispatch::{self, ClaimedDelivery, Next, SendResult};
use crate::db::group_commit::GroupCommit;
use crate::domain::DeliveryId;
use crate::faults::{CrashPoint, Faults};
use crate::outbound::{CONNECTION_ERROR, Message, Outbound, TIMEOUT};
use crate::retry::Schedule;

/// Jitter of webhook retries (contract §6: ±20 %).
pub const JITTER: f64 = 0.2;

/// Sends deliveries and records their outcome.
pub struct Sender {
    pool: PgPool,
    outbound: Outbound,
    settings: WebhookSettings,
    schedule: Schedule,
    secrets: Arc<crate::secretbox::SecretBox>,
    faults: Faults,
    succeeded: GroupCommit<Delivered, bool>,
}

/// A successful send to record.
struct Delivered {
    delivery: ClaimedDelivery,
    result: SendResult,
}

impl Sender {
    /// A sender whose requests time out after `webhooks.timeout` and never
    /// follow redirects.
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        secrets: Arc<crate::secretbox::SecretBox>,
        faults: Faults,
    ) -> reqwest::Result<Self> {
        let outbound = Outbound::new(settings.timeout, settings.allow_private_targets)?;
        let schedule = Schedule::new(&settings.retry_schedule, JITTER);
        // One writer: a send's slot is free once its endpoint answered, so a
        // record that waits for the batch before it costs no throughput, and
        // a larger batch costs PostgreSQL less per delivery.
        let succeeded =
            GroupCommit::start_with("delivery", pool.clone(), 1, 256, |pool, sent: Vec<Arc<Delivered>>| async move {
                let pairs: Vec<_> = sent.iter().map(|s| (&s.delivery, &s.result)).collect();
                let recorded: HashSet<DeliveryId> =
                    dispatch::record_succeeded(&pool, &pairs).await?.into_iter().collect();
                Ok(sent.iter().map(|s| recorded.contains(&s.delivery.id)).collect())
            });
        Ok(Self { pool, outbound, settings, schedule, secrets, faults, succeeded })
    }

    /// Sends one claimed delivery and records the attempt; `sent` runs as
    /// soon as the endpoint has answered (or the send failed), before the
    /// record, with how it answered.
    #[tracing::instrument(name = "delivery", skip_all, fields(delivery_id = %d.id, event_id = %d.event_id))]
    pub async fn send(&self, d: ClaimedDelivery, sent: impl FnOnce(Answer)) {
        // A throttled endpoint's bucket is shared by every dispatcher; a
        // send it has no room for goes back, due when it will have.
        // The cold paths (throttle, failure record) are boxed: every send
        // in flight is a task holding its whole future, so their states
        // would make each of hundreds of tasks larger (docs/PERFORMANCE.md).
        if let Some(rate) = d.rate_limit
            && let Some(wait) = Box::pin(throttled(&self.pool, &d, rate)).await
        {
            sent(Answer::Other);
            if let Err(e) = Box::pin(dispatch::defer(&self.pool, &d, wait)).await {
                tracing::warn!(error = %e, "deferring a throttled delivery failed; it is due after its lease");
            }
            return;
        }
        let started = Instant::now();
        let (result, gone, retry_after) = self.attempt(&d).await;
        sent(answer(&result, started.elapsed()));
        self.faults.crash_point(CrashPoint::DispatcherAfterSend);
        let result = SendResult { duration_ms: started.elapsed().as_millis().min(i32::MAX as u128) as i32, ..result };
        let next = if result.status_code.is_some_and(|s| (200..300).contains(&s)) {
            Next::Succeeded
        } else if gone || !d.endpoint_enabled {
            Next::Failed
        } else {
            next_after_failure(&self.schedule, d.attempts, retry_after)
        };
        let outcome = match next {
            Next::Succeeded => "succeeded",
            Next::RetryIn(_) => "retry",
            Next::Failed => "failed",
        };
        crate::observe::delivery(outcome, started.elapsed());
        // A success is in the delivery log and the metrics; a log line for
        // each would cost more than its send at thousands a second.
        if matches!(next, Next::Succeeded) {
            tracing::debug!(endpoint_id = %d.endpoint_id, attempt = d.attempts, status = ?result.status_code, "webhook delivered");
        } else {
            tracing::info!(
                delivery_id = %d.id, event_id = %d.event_id, endpoint_id = %d.endpoint_id, attempt = d.attempts,
                status = ?result.status_code, error = ?result.error, ?next, "webhook attempt"
            );
        }
        let recorded = match next {
            // The common case goes with the next batch of successes.
            Next::Succeeded => self.succeeded.submit(Arc::new(Delivered { delivery: d, result })).await,
            _ => Box::pin(dispatch::record(&self.pool, &d, &result, next, gone, self.settings.disable_after)).await,
        };
        // The span names the delivery.
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::info!("delivery was re-claimed meanwhile; result kept in the log"),
            // The row stays claimed until its lease ends, then is sent again.
            Err(e) => tracing::warn!(error = %e, "recording a delivery failed"),
        }
    }

    /// Performs the HTTP request. Answers the result, whether the endpoint
    /// said 410 Gone, and any `Retry-After`.
    async fn attempt(&self, d: &ClaimedDelivery) -> (SendResult, bool, Option<Duration>) {
        let fail = |error: String| {
            (SendResult { status_code: None, error: Some(error), duration_ms: 0, response_body: None }, false, None)
        };
        if !d.endpoint_enabled {
            return fail("endpoint is disabled".into());
        }
        let owner = d.endpoint_id.as_str();
        let opened = self.secrets.open(owner, &d.secret).and_then(|secret| {
            let previous = d.previous_secret.as_deref().map(|p| self.secrets.open(owner, p)).transpose()?;
            Ok((secret, previous))
        });
        let Ok((secret, previous)) = opened else {
            return fail(
                "the endpoint's secret does not decrypt: is secrets.master_key the one it was sealed with?".into(),
            );
        };
        let posted = self
            .outbound
            .post(Message {
                url: &d.url,
                livemode: d.livemode,
                secret: &secret,
                previous_secret: previous.as_deref(),
                id: d.event_id.as_str(),
                body: event_body(d),
            })
            .await;
        let gone = posted.status_code == Some(410);
        let result = SendResult {
            status_code: posted.status_code,
            error: posted.error,
            duration_ms: 0,
            response_body: posted.response_body,
        };
        (result, gone, posted.retry_after)
    }
}

/// `None` when the endpoint's throttle lets one more send through now, else
/// how long until it will. A bucket that cannot be read lets it through:
/// the throttle protects a receiver, it must not stop deliveries.
async fn throttled(pool: &PgPool, d: &ClaimedDelivery, rate: i32) -> Option<Duration> {
    let interval = 1.0 / f64::from(rate.max(1));
    let bucket = format!("endpoint:{}", d.endpoint_id);
    // A burst of one interval: sends are spaced, across processes.
    match crate::db::ratelimits::take(pool, bucket.as_bytes(), interval, interval).await {
        Ok(Some(_)) | Err(_) => None,
        Ok(None) => {
            let ahead = crate::db::ratelimits::ahead(pool, bucket.as_bytes()).await.unwrap_or(interval);
            Some(Duration::from_secs_f64((ahead - interval).max(0.0) + interval * rand_jitter()))
        }
    }
}

/// A factor in [0.5, 1.5): deferred sends do not all come due at once.
fn rand_jitter() -> f64 {
    0.5 + f64::from(rand::random::<u16>()) / f64::from(u16::MAX)
}

/// How a send ended, for the endpoint's concurrency limit.
fn answer(result: &SendResult, took: Duration) -> Answer {
    match (result.status_code, result.error.as_deref()) {
        (Some(s), _) if (200..300).contains(&s) => Answer::Delivered(took),
        (Some(s), _) if s == 429 || s >= 500 => Answer::Overloaded,
        (None, Some(e)) if e == TIMEOUT || e.starts_with(CONNECTION_ERROR) => Answer::Overloaded,
        _ => Answer::Other,
    }
}

/// The event as the webhook body.
fn event_body(d: &ClaimedDelivery) -> String {
    let (id, kind) = (d.event_id.as_str(), d.event_type.as_str());
    crate::webhooks::event_body(id, kind, d.event_created_at, d.livemode, &d.data)
}

/// After failed attempt number `attempts` (1-based): retry after the
/// schedule's next delay with jitter (or the receiver's `Retry-After`, up to
/// twice that delay), or give up when the schedule is used up.
pub fn next_after_failure(schedule: &Schedule, attempts: i32, retry_after: Option<Duration>) -> Next {
    let failed = usize::try_from(attempts).unwrap_or(0);
    match (schedule.step(failed), retry_after) {
        (None, _) => Next::Failed,
        (Some(step), Some(asked)) => Next::RetryIn(asked.min(step * 2)),
        (Some(_), None) => schedule.delay_after(failed).map_or(Next::Failed, Next::RetryIn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(n: Next) -> Duration {
        match n {
            Next::RetryIn(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_then_stop() {
        let schedule = Schedule::new(&[Duration::from_secs(5), Duration::from_secs(300)], JITTER);
        for _ in 0..100 {
            let d = delay(next_after_failure(&schedule, 1, None));
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
            let d = delay(next_after_failure(&schedule, 2, None));
            assert!(d >= Duration::from_secs(240) && d <= Duration::from_secs(360), "{d:?}");
        }
        assert!(matches!(next_after_failure(&schedule, 3, None), Next::Failed));
    }

    #[test]
    fn retry_after_is_bounded_by_twice_the_step() {
        let schedule = Schedule::new(&[Duration::from_secs(5)], JITTER);
        assert_eq!(delay(next_after_failure(&schedule, 1, Some(Duration::from_secs(7)))), Duration::from_secs(7));
        assert_eq!(delay(next_after_failure(&schedule, 1, Some(Duration::from_secs(3600)))), Duration::from_secs(10));
    }
}
