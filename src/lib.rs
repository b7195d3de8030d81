//! payd — a webhook-driven asynchronous payment worker.
//!
//! # The rule: one import direction
//!
//! Each module belongs to one layer and imports only from layers below it
//! (`scripts/check-architecture` fails the build otherwise, and fails on SQL
//! outside `db`):
//!
//! | layer | modules | may import |
//! |---|---|---|
//! | 0 domain | [`domain`]: ids, money, the payment state machine, statuses and kinds, event types, queue messages. Pure. | nothing of payd |
//! | 1 support | [`config`], [`telemetry`], [`observe`], [`faults`], [`timefmt`], [`retry`], [`webhooks`] (Standard Webhooks signatures), [`target`] (the SSRF guard), `outbound` (one signed webhook POST), `secretbox` (secrets at rest) | domain, support |
//! | 2 db | [`db`]: every SQL statement, behind named functions whose guards state their transition; the group commit | domain, support |
//! | 3 providers | [`provider`]: the `Provider` trait; the sandbox (its ledger is in db), HTTP gateways, Stripe | db and below |
//! | 4 service | [`service`]: the use cases, authentication, idempotency, the one error type [`service::ApiError`] | providers and below |
//! | 5 transport | [`queue`]: the RabbitMQ connection, topology, consumer loop and the outbox relay | service and below |
//! | 6 entry points | [`http`] (the API; it calls the service only, never db), [`worker`] (attempts and AMQP commands), [`dispatcher`] (webhooks), [`scheduler`] | transport and below, never each other |
//! | 7 composition | [`app`] (starts roles), [`cli`], [`loadtest`], [`testing`] | everything |
//!
//! The flow: a create (HTTP, or an AMQP command) commits the payment, its
//! attempt, its event and an outbox row in one statement; the relay
//! publishes the outbox to RabbitMQ; a worker claims the attempt, calls the
//! provider and commits the outcome with its events; the dispatcher claims
//! due deliveries and sends them signed. Postgres holds the truth; RabbitMQ
//! carries work.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
mod db;
mod dispatcher;
mod domain;
mod faults;
mod http;
mod loadtest;
mod observe;
mod outbound;
mod provider;
mod queue;
mod retry;
mod scheduler;
mod secretbox;
mod service;
mod target;
pub mod telemetry;
pub mod testing;
mod timefmt;
pub mod webhooks;
mod worker;

/// Installs the process-wide TLS crypto provider (aws-lc-rs) used by the
/// Postgres, RabbitMQ and HTTP clients. Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
