//! Integration tests against real PostgreSQL and RabbitMQ. Each test has its
//! own database and AMQP prefix, so they run in parallel.

mod amqp_events;
mod architecture;
mod batches;
mod chaos;
mod common;
mod console;
mod console_http;
mod crash;
mod creates;
mod details;
mod disruptive;
mod errors;
mod flow;
mod gateway;
mod idempotency;
mod keys;
mod latency;
mod lifecycle;
mod limits;
mod localstripe;
mod methods;
mod notifications;
mod observe;
mod plans;
mod producers;
mod queue;
mod raw_amqp;
mod recovery;
mod retries;
mod stripe;
mod tooling;
mod two_stage;
mod unknown;
mod webhooks;
