//! The command intake: payment commands that queue producers publish to
//! `<prefix>payd.commands` (contract §7), executed through the same use cases
//! as HTTP, with `message_id` as the idempotency key.
//!
//! Outcomes: done → reply `{"ok":true,"data":…}` (with `reply_to`), then ack;
//! refused (4xx) → reply `{"ok":false,"status":…,"error":…}`, then dead-letter
//! with `x-payd-error`; payd's own trouble (5xx, a duplicate still in flight)
//! → requeue, nothing was committed.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use serde_json::{Map, Value, json};

use crate::db::keys::{self, KeyKind};
use crate::db::payments::Scope;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::queue::Amqp;
use crate::queue::consumer::{self, Handler};
use crate::queue::messages::COMMANDS_DEAD_QUEUE;
use crate::service::payments::{self, CreatePayment};
use crate::service::{Ctx, IdempotencyKey, Outcome, lifecycle};

/// Largest accepted command body, as for HTTP.
pub const MAX_BODY: usize = 64 * 1024;

/// Consumes the command queue.
pub struct CommandIntake {
    ctx: Ctx,
    amqp: Arc<Amqp>,
    faults: Faults,
}

impl CommandIntake {
    /// An intake running commands against `ctx`.
    pub fn new(ctx: Ctx, amqp: Arc<Amqp>, faults: Faults) -> Self {
        Self { ctx, amqp, faults }
    }

    /// Authenticates, parses and executes one command.
    async fn execute(&self, d: &Delivery) -> Result<Outcome, ApiError> {
        if d.data.len() > MAX_BODY {
            return Err(too_large());
        }
        let message_id =
            d.properties.message_id().as_ref().map(|m| m.to_string()).filter(|m| !m.is_empty()).ok_or_else(|| {
                ApiError::new(400, "message_id_missing", "message_id is required: it is the idempotency key")
            })?;
        let principal = self.authenticate(d).await?;
        let CommandBody { kind, data } = parse_body(&d.data)?;
        if principal.kind == KeyKind::Ops {
            return Err(ApiError::forbidden("operator keys cannot submit payment commands"));
        }
        if principal.kind == KeyKind::Publishable && kind != "payment.create" {
            return Err(ApiError::forbidden("publishable keys may only create payments"));
        }
        let Some(merchant_id) = principal.merchant_id else {
            return Err(ApiError::forbidden("this key has no merchant"));
        };
        let scope = Scope { merchant_id, livemode: principal.livemode, actor: principal.key_id.to_string() };
        let ctx = &self.ctx;
        match kind.as_str() {
            "payment.create" => {
                let data = Value::Object(data);
                // The same fingerprint as HTTP: message_id and Idempotency-Key are twins.
                let key = IdempotencyKey::new(&message_id, "POST /v1/payments", &data)?;
                payments::create(ctx, &scope, CreatePayment::parse(data)?, Some(&key)).await
            }
            "payment.cancel" | "payment.capture" | "payment.refund" => {
                let (id, rest) = take_payment_id(data)?;
                let verb = kind.trim_start_matches("payment.");
                let key = IdempotencyKey::new(&message_id, &format!("POST /v1/payments/{id}/{verb}"), &rest)?;
                match verb {
                    "cancel" => lifecycle::cancel(ctx, &scope, &id, rest, Some(&key)).await,
                    "capture" => lifecycle::capture(ctx, &scope, &id, rest, Some(&key)).await,
                    _ => lifecycle::refund(ctx, &scope, &id, rest, Some(&key)).await,
                }
            }
            other => {
                Err(ApiError::new(400, "command_unknown", format!("unknown command type {other}")).with_param("type"))
            }
        }
    }

    async fn authenticate(&self, d: &Delivery) -> Result<keys::Principal, ApiError> {
        let header = d.properties.headers().as_ref().and_then(|h| h.inner().get("authorization").cloned());
        let raw = match header {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(AMQPValue::ShortString(s)) => s.to_string(),
            _ => return Err(ApiError::unauthenticated("no API key: set the authorization header to Bearer <key>")),
        };
        let key = raw
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| ApiError::unauthenticated("malformed authorization header: use Bearer <key>"))?;
        keys::authenticate(&self.ctx.db, key).await?.ok_or_else(|| ApiError::unauthenticated("invalid API key"))
    }

    /// Publishes the reply when the producer asked for one.
    async fn reply(&self, d: &Delivery, body: &Value) -> Result<(), lapin::Error> {
        let Some(reply_to) = d.properties.reply_to().as_ref() else { return Ok(()) };
        let mut props = BasicProperties::default().with_content_type("application/json".into());
        if let Some(c) = d.properties.correlation_id() {
            props = props.with_correlation_id(c.clone());
        }
        let payload = body.to_string();
        self.amqp
            .publisher()
            .await?
            .basic_publish("".into(), reply_to.clone(), BasicPublishOptions::default(), payload.as_bytes(), props)
            .await?
            .await?;
        Ok(())
    }
}

fn too_large() -> ApiError {
    ApiError::new(413, "body_too_large", format!("the body must be at most {MAX_BODY} bytes"))
}

/// A command's body: `{"type": …, "data": {…}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandBody {
    /// `payment.create`, `payment.cancel`, …
    pub kind: String,
    /// The request it carries (`{}` when absent).
    pub data: Map<String, Value>,
}

/// Parses a command's body (contract §7) without touching anything else;
/// every refusal is a contract error. The fuzz target `amqp_command` feeds
/// it arbitrary bytes.
pub fn parse_body(bytes: &[u8]) -> Result<CommandBody, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(too_large());
    }
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(400, "json_invalid", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut body) = body else {
        return Err(ApiError::new(400, "parameter_invalid", "the body must be a JSON object"));
    };
    if let Some(unknown) = body.keys().find(|k| !["type", "data"].contains(&k.as_str())) {
        return Err(ApiError::unknown_field(unknown));
    }
    let kind = match body.remove("type") {
        Some(Value::String(t)) => t,
        Some(_) => return Err(ApiError::invalid("type", "type must be a string")),
        None => return Err(ApiError::missing("type")),
    };
    let data = match body.remove("data") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(ApiError::invalid("data", "data must be an object")),
    };
    Ok(CommandBody { kind, data })
}

/// Splits `payment_id` off a change command's data.
pub fn take_payment_id(mut data: Map<String, Value>) -> Result<(String, Value), ApiError> {
    match data.remove("payment_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok((id, Value::Object(data))),
        Some(_) => Err(ApiError::invalid("payment_id", "payment_id must be a payment id (pay_…)")),
        None => Err(ApiError::missing("payment_id")),
    }
}

impl Handler for CommandIntake {
    async fn handle(&self, delivery: Delivery) {
        match self.execute(&delivery).await {
            Ok(outcome) => {
                if let Err(e) = self.reply(&delivery, &json!({"ok": true, "data": outcome.body})).await {
                    // Committed, but the producer has not heard: redeliver,
                    // and the idempotency key answers the same outcome again.
                    tracing::warn!(error = %e, "intake: reply failed; requeueing");
                    consumer::requeue(&delivery).await;
                    return;
                }
                self.faults.crash_point("intake.before_ack");
                consumer::ack(&delivery).await;
            }
            Err(e) if e.status >= 500 || e.code == "idempotency_key_in_use" => {
                e.log();
                consumer::requeue(&delivery).await;
            }
            Err(e) => {
                tracing::info!(code = %e.code, message = %e.message, "intake: command refused; dead-lettering");
                let reply = json!({"ok": false, "status": e.status, "error": e.body()["error"]});
                if let Err(err) = self.reply(&delivery, &reply).await {
                    tracing::warn!(error = %err, "intake: error reply failed");
                }
                consumer::dead_letter(&self.amqp, &delivery, COMMANDS_DEAD_QUEUE, &e.code).await;
            }
        }
    }
}
