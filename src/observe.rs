//! Prometheus metrics (`GET /metrics`), with the `metrics` crate family.
//! Every metric payd exports is named here, so the list is in one place:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `payd_http_requests_total` | counter | `method`, `route`, `status` |
//! | `payd_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `payd_payment_transitions_total` | counter | `from`, `to` |
//! | `payd_attempts_total` | counter | `provider`, `operation`, `outcome` |
//! | `payd_provider_call_duration_seconds` | histogram | `provider`, `operation` |
//! | `payd_provider_config_errors_total` | counter (a gateway 4xx that is no decline) | `status` |
//! | `payd_unknown_outcomes_total` | counter | `step` (`recorded`, `inquired`, `settled`, `left_for_operator`, `late_success`) |
//! | `payd_queue_published_total` | counter | `queue` |
//! | `payd_queue_publish_duration_seconds` | histogram (per batch, until confirmed) | |
//! | `payd_queue_consumed_total` | counter | `queue`, `result` (`ack`, `requeue`, `recycle`, `dead_letter`, `unparseable`) |
//! | `payd_queue_handle_duration_seconds` | histogram | `queue` |
//! | `payd_outbox_pending` · `payd_outbox_lag_seconds` | gauges | |
//! | `payd_attempts_due` | gauge (scheduled attempts due now) | |
//! | `payd_attempts_held` · `payd_holds_active` · `payd_hold_oldest_age_seconds` | gauges (operators' holds) | |
//! | `payd_transactions_unknown` · `payd_transactions_unknown_oldest_age_seconds` | gauges (stuck transactions) | |
//! | `payd_webhook_endpoints_disabled` | gauge (endpoints disabled now) | |
//! | `payd_webhook_deliveries_total` | counter | `outcome` (`succeeded`, `retry`, `failed`) |
//! | `payd_webhook_delivery_duration_seconds` | histogram | |
//! | `payd_webhook_endpoints_disabled_total` | counter | |
//! | `payd_webhook_claim_duration_seconds` | histogram (one claim statement, with its connection) | |
//! | `payd_webhook_claimed_total` | counter (deliveries claimed) | |
//! | `payd_batches_total` · `payd_batched_jobs_total` | counters (their ratio is the mean group-commit batch) | `stage` (`create`, `claim`, `outcome`, `delivery`, `sandbox`) |
//! | `payd_batch_queued` | gauge (jobs waiting for a group-commit writer) | `stage` |
//!
//! Gauges read from Postgres (outbox, due attempts, holds, unknown
//! transactions, disabled endpoints) are the whole
//! deployment's; counters and histograms are this process's.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, in seconds: 1 ms to 30 s.
const BUCKETS: [f64; 15] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0];

/// Installs the process-wide recorder (once; several payd instances in one
/// process, as in tests, share it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(&BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text exposition.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

/// Trims histogram buffers; call every few seconds.
pub fn upkeep() {
    if let Some(h) = install() {
        h.run_upkeep();
    }
}

/// One HTTP answer.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let (method, route) = (method.to_owned(), route.to_owned());
    counter!("payd_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!("payd_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}

/// A payment changed status (`from` is `new` for a created payment).
pub fn transition(from: &str, to: &str) {
    counter!("payd_payment_transitions_total", "from" => from.to_owned(), "to" => to.to_owned()).increment(1);
}

/// One provider call and how it ended (`succeeded`, `pending`, `transient`, `declined`).
pub fn attempt(provider: &str, operation: &str, outcome: &'static str, elapsed: Duration) {
    let (provider, operation) = (provider.to_owned(), operation.to_owned());
    counter!("payd_attempts_total", "provider" => provider.clone(), "operation" => operation.clone(), "outcome" => outcome)
        .increment(1);
    histogram!("payd_provider_call_duration_seconds", "provider" => provider, "operation" => operation)
        .record(elapsed.as_secs_f64());
}

/// A gateway refused a call as misconfigured (a 4xx that is no decline).
pub fn provider_error(status: u16) {
    counter!("payd_provider_config_errors_total", "status" => status.to_string()).increment(1);
}

/// A step of an unknown outcome (contract §12): `recorded` (a call's outcome
/// is unknown), `inquired` (the provider was asked), `settled` (its answer
/// settled the payment), `left_for_operator` (still unknown after the
/// inquiry schedule), `late_success` (a success for a settled payment).
pub fn unknown_outcome(step: &'static str) {
    counter!("payd_unknown_outcomes_total", "step" => step).increment(1);
}

/// A job handed to the group-commit writer of `stage` (`db::batch`).
pub fn batch_queued(stage: &'static str) {
    gauge!("payd_batch_queued", "stage" => stage).increment(1.0);
}

/// A batch of `n` jobs of `stage` taken from the queue to be written.
pub fn batch(stage: &'static str, n: usize) {
    gauge!("payd_batch_queued", "stage" => stage).decrement(n as f64);
    counter!("payd_batches_total", "stage" => stage).increment(1);
    counter!("payd_batched_jobs_total", "stage" => stage).increment(n as u64);
}

/// A batch of outbox rows published and confirmed.
pub fn published(queue: &str, n: u64) {
    counter!("payd_queue_published_total", "queue" => queue.to_owned()).increment(n);
}

/// How long a publish batch took until the broker confirmed it.
pub fn publish_batch(elapsed: Duration) {
    histogram!("payd_queue_publish_duration_seconds").record(elapsed.as_secs_f64());
}

/// A message settled by a consumer.
pub fn consumed(queue: &str, result: &'static str) {
    counter!("payd_queue_consumed_total", "queue" => queue.to_owned(), "result" => result).increment(1);
}

/// How long a consumer took with one message.
pub fn handled(queue: &str, elapsed: Duration) {
    histogram!("payd_queue_handle_duration_seconds", "queue" => queue.to_owned()).record(elapsed.as_secs_f64());
}

/// The outbox: rows not yet published, and the age of the oldest.
pub fn outbox(pending: i64, lag: f64) {
    gauge!("payd_outbox_pending").set(pending as f64);
    gauge!("payd_outbox_lag_seconds").set(lag);
}

/// Scheduled attempts that are due now.
pub fn attempts_due(n: i64) {
    gauge!("payd_attempts_due").set(n as f64);
}

/// What operators alert on (read from Postgres by the scheduler): attempts
/// held and active holds with the age of the oldest, transactions whose
/// outcome is unknown with the age of the oldest, disabled endpoints.
pub fn operator_gauges(held: i64, holds: i64, oldest_hold: f64, unknown: i64, oldest_unknown: f64, disabled: i64) {
    gauge!("payd_attempts_held").set(held as f64);
    gauge!("payd_holds_active").set(holds as f64);
    gauge!("payd_hold_oldest_age_seconds").set(oldest_hold);
    gauge!("payd_transactions_unknown").set(unknown as f64);
    gauge!("payd_transactions_unknown_oldest_age_seconds").set(oldest_unknown);
    gauge!("payd_webhook_endpoints_disabled").set(disabled as f64);
}

/// One webhook send and what follows it (`succeeded`, `retry`, `failed`).
pub fn delivery(outcome: &'static str, elapsed: Duration) {
    counter!("payd_webhook_deliveries_total", "outcome" => outcome).increment(1);
    histogram!("payd_webhook_delivery_duration_seconds").record(elapsed.as_secs_f64());
}

/// One claim of due deliveries: how many it took and how long it took.
pub fn delivery_claim(claimed: usize, elapsed: Duration) {
    counter!("payd_webhook_claimed_total").increment(claimed as u64);
    histogram!("payd_webhook_claim_duration_seconds").record(elapsed.as_secs_f64());
}

/// An endpoint was disabled (410 Gone, or failing for `disable_after`).
pub fn endpoint_disabled() {
    counter!("payd_webhook_endpoints_disabled_total").increment(1);
}
