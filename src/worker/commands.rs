//! The command consumer: payment commands that queue producers publish to
//! `<prefix>payd.commands` (contract §7), executed through the same use cases
//! as HTTP, with `message_id` as the idempotency key.
//!
//! Outcomes: done → reply `{"ok":true,"data":…}` (with `reply_to`), then ack;
//! refused (4xx) → reply `{"ok":false,"status":…,"error":…}`, then dead-letter
//! with `x-payd-error`; payd's own trouble (5xx, a duplicate still in flight)
//! → held and retried ([`consumer::Hold`]), nothing was committed.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use serde_json::{Map, Value, json};

use crate::domain::messages::COMMANDS_DEAD_QUEUE;
use crate::faults::{CrashPoint, Faults};
use crate::queue::Amqp;
use crate::queue::consumer::{self, Handler};
use crate::service::auth::{self, Access};
use crate::service::payments::{self, CreatePayment};
use crate::service::{ApiError, Ctx, ErrorCode, IdempotencyKey, Outcome, lifecycle};

/// Largest accepted command body, as for HTTP.
pub const MAX_BODY: usize = 64 * 1024;

/// The commands producers may send (contract §7), each with the route of
/// the HTTP request it is the twin of: its idempotency fingerprint is that
/// route's, so a `message_id` and an `Idempotency-Key` of the same value
/// name one request. (A test in `app` checks each route exists.)
pub(crate) const COMMANDS: [(&str, &str); 4] = [
    ("payment.create", "/v1/payments"),
    ("payment.cancel", "/v1/payments/{id}/cancel"),
    ("payment.capture", "/v1/payments/{id}/capture"),
    ("payment.refund", "/v1/payments/{id}/refund"),
];

/// Consumes the command queue.
pub struct CommandConsumer {
    ctx: Ctx,
    amqp: Arc<Amqp>,
    faults: Faults,
}

impl CommandConsumer {
    /// A consumer running commands against `ctx`.
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
                ApiError::new(400, ErrorCode::MessageIdMissing, "message_id is required: it is the idempotency key")
            })?;
        if message_id.contains('\0') {
            return Err(ApiError::nul("message_id"));
        }
        let principal = self.authenticate(d).await?;
        let CommandBody { kind, data } = parse_body(&d.data)?;
        let access = if kind == "payment.create" { Access::CreatePayments } else { Access::Merchant };
        let scope = auth::scope(&principal, access).map_err(|e| match principal.merchant_id {
            None => ApiError::forbidden("operator keys cannot submit payment commands"),
            Some(_) => e,
        })?;
        let unknown =
            || ApiError::new(400, ErrorCode::CommandUnknown, format!("unknown command type {kind}")).with_param("type");
        let route = COMMANDS.iter().find(|(k, _)| *k == kind).map(|(_, route)| *route).ok_or_else(unknown)?;
        let ctx = &self.ctx;
        if kind == "payment.create" {
            let data = Value::Object(data);
            let key = IdempotencyKey::new(&message_id, "POST", route, &data)?;
            return payments::create(ctx, &scope, CreatePayment::parse(data)?, Some(&key)).await;
        }
        let (id, rest) = take_payment_id(data)?;
        let key = IdempotencyKey::new(&message_id, "POST", &route.replace("{id}", &id), &rest)?;
        match kind.as_str() {
            "payment.cancel" => lifecycle::cancel(ctx, &scope, &id, rest, Some(&key)).await,
            "payment.capture" => lifecycle::capture(ctx, &scope, &id, rest, Some(&key)).await,
            _ => lifecycle::refund(ctx, &scope, &id, rest, Some(&key)).await,
        }
    }

    /// The key of the `authorization` header, through the one authentication of every entry point.
    async fn authenticate(&self, d: &Delivery) -> Result<crate::domain::Principal, ApiError> {
        let header = d.properties.headers().as_ref().and_then(|h| h.inner().get("authorization").cloned());
        let raw = match header {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
            _ => None,
        };
        auth::authenticate(&self.ctx, raw.as_deref(), "no API key: set the authorization header to Bearer <key>").await
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
    ApiError::new(413, ErrorCode::BodyTooLarge, format!("the body must be at most {MAX_BODY} bytes"))
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
        .map_err(|e| ApiError::new(400, ErrorCode::JsonInvalid, format!("the body is not valid JSON: {e}")))?;
    ApiError::check_nul(&body)?;
    let Value::Object(mut body) = body else {
        return Err(ApiError::new(400, ErrorCode::ParameterInvalid, "the body must be a JSON object"));
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

impl Handler for CommandConsumer {
    fn unparseable(&self) -> Option<(&'static str, &'static str)> {
        Some((COMMANDS_DEAD_QUEUE, ErrorCode::ParameterInvalid.as_str()))
    }

    async fn handle(&self, delivery: Delivery) {
        if consumer::last_delivery(&delivery) {
            tracing::warn!("commands: the broker's delivery limit is reached; dead-lettering");
            consumer::dead_letter(&self.amqp, &delivery, COMMANDS_DEAD_QUEUE, ErrorCode::InternalError.as_str()).await;
            return;
        }
        let mut hold = consumer::Hold::default();
        let result = loop {
            match self.execute(&delivery).await {
                Err(e) if e.status >= 500 || e.code == ErrorCode::IdempotencyKeyInUse => {
                    e.log();
                    // Held while Postgres is away, however long; only a
                    // command that keeps failing with Postgres up is given up on.
                    if consumer::Hold::worn_out(&delivery) && crate::db::ping(&self.ctx.db).await {
                        break Err(e);
                    }
                    if !hold.wait(&self.amqp, &delivery).await {
                        return;
                    }
                }
                other => break other,
            }
        };
        match result {
            Ok(outcome) => {
                if let Err(e) = self.reply(&delivery, &json!({"ok": true, "data": outcome.body})).await {
                    // Committed, but the producer has not heard: redeliver,
                    // and the idempotency key answers the same outcome again.
                    tracing::warn!(error = %e, "commands: reply failed; requeueing");
                    consumer::requeue(&delivery).await;
                    return;
                }
                self.faults.crash_point(CrashPoint::CommandsBeforeAck);
                consumer::ack(&delivery).await;
            }
            Err(e) => {
                tracing::info!(code = %e.code, message = %e.message, "commands: command refused; dead-lettering");
                let reply = json!({"ok": false, "status": e.status, "error": e.body()["error"]});
                if let Err(err) = self.reply(&delivery, &reply).await {
                    tracing::warn!(error = %err, "commands: error reply failed");
                }
                consumer::dead_letter(&self.amqp, &delivery, COMMANDS_DEAD_QUEUE, e.code.as_str()).await;
            }
        }
    }
}
