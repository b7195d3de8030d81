//! payd — a webhook-driven asynchronous payment worker.
//!
//! Map of the crate (the flow runs top to bottom):
//!
//! - [`config`]: settings from `config/*.toml` and `PAYD_SECTION__KEY`.
//! - [`domain`]: ids, money, the payment state machine, event types. Pure.
//! - [`error`]: the one error answer and its contract body.
//! - [`service`]: the use cases (payments, their money operations and
//!   details, payment methods, endpoints, `Prefer: wait`…), each one
//!   transaction of state + events + outbox; shared by every intake.
//! - [`http`]: the axum API: routes (each described for OpenAPI),
//!   extractors, per-key rate limits, error rendering.
//! - [`db`]: Postgres queries, one module per table group (payments,
//!   transactions, attempts, audit log, payment methods…); migrations;
//!   group commits (`db::batch`) that write concurrent callers' statements
//!   together (creates, claims, outcomes, webhook records).
//! - [`queue`]: RabbitMQ connection and topology, the outbox relay.
//! - [`worker`]: consumes the work queue, claims attempts, calls providers,
//!   records their outcomes (the common ones in shared transactions).
//! - [`provider`]: payment providers (the built-in `sandbox`, HTTP gateways).
//! - [`scheduler`]: expired leases, due attempts, purges; [`retry`]: schedules.
//! - [`dispatcher`]: signed webhook delivery with retries; SSRF guard.
//! - [`webhooks`]: `verify`, for receivers of payd's webhooks.
//! - [`app`]: starts and stops roles; [`cli`]: the command line;
//!   [`loadtest`]: `payd loadtest`, the load generator.
//! - [`faults`]: crash points for kill-9 tests; [`telemetry`]: logs;
//!   [`observe`]: Prometheus metrics (`GET /metrics`).

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod dispatcher;
pub mod domain;
pub mod error;
pub mod faults;
pub mod http;
pub mod loadtest;
pub mod observe;
pub mod provider;
pub mod queue;
pub mod retry;
pub mod scheduler;
pub mod service;
pub mod telemetry;
pub mod timefmt;
pub mod webhooks;
pub mod worker;

/// Installs the process-wide TLS crypto provider (aws-lc-rs) used by the
/// Postgres, RabbitMQ and HTTP clients. Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
