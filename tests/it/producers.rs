//! Queue producers (contract §7), with lapin as a real AMQP client: every
//! command with and without reply_to, duplicate message ids, every poison
//! kind, a consumer killed mid-message, and a flood alongside HTTP load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, WAIT, eventually, payd, wait_exit};

/// A producer: a confirm channel and a private reply queue.
pub(crate) struct Producer {
    pub(crate) conn: Connection,
    pub(crate) ch: Channel,
    exchange: String,
    reply_queue: String,
    replies: Arc<Mutex<HashMap<String, Vec<Value>>>>,
}

impl Producer {
    pub(crate) async fn connect(app: &TestApp) -> Self {
        let url =
            std::env::var("PAYD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let conn = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let reply_queue = q.name().to_string();
        let replies: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        let mut consumer = ch
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let sink = replies.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let corr = d.properties.correlation_id().as_ref().map(|c| c.to_string()).unwrap_or_default();
                let body: Value = serde_json::from_slice(&d.data).unwrap_or(Value::Null);
                sink.lock().unwrap().entry(corr).or_default().push(body);
            }
        });
        let exchange = format!("{}payd.commands", app.vars["PAYD_AMQP__PREFIX"]);
        Self { conn, ch, exchange, reply_queue, replies }
    }

    /// Publishes a command; `reply` asks for an answer under `message_id`'s
    /// own correlation id. Answers the correlation id.
    async fn send(
        &self,
        key: Option<&str>,
        message_id: Option<&str>,
        routing_key: &str,
        body: &[u8],
        reply: bool,
    ) -> String {
        let corr = uuid::Uuid::new_v4().to_string();
        let mut headers = FieldTable::default();
        if let Some(k) = key {
            headers.insert("authorization".into(), AMQPValue::LongString(format!("Bearer {k}").into()));
        }
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers)
            .with_correlation_id(corr.as_str().into());
        if let Some(id) = message_id {
            props = props.with_message_id(id.into());
        }
        if reply {
            props = props.with_reply_to(self.reply_queue.as_str().into());
        }
        let confirm = self
            .ch
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
        corr
    }

    pub(crate) async fn command(&self, key: &str, message_id: &str, kind: &str, data: Value, reply: bool) -> String {
        let body = json!({"type": kind, "data": data}).to_string();
        self.send(Some(key), Some(message_id), kind, body.as_bytes(), reply).await
    }

    async fn reply(&self, corr: &str) -> Value {
        eventually(&format!("a reply for {corr}"), WAIT, || async {
            self.replies.lock().unwrap().get(corr).and_then(|v| v.first().cloned())
        })
        .await
    }

    pub(crate) fn replies_for(&self, corr: &str) -> Vec<Value> {
        self.replies.lock().unwrap().get(corr).cloned().unwrap_or_default()
    }
}

pub(crate) fn create_data(method: &str, amount: i64) -> Value {
    json!({"amount": amount, "currency": "USD", "payment_method_id": method})
}

/// Reads the dead-letter queue until `n` messages arrived: (x-payd-error, body).
pub(crate) async fn dead_letters(app: &TestApp, ch: &Channel, n: usize) -> Vec<(String, Vec<u8>)> {
    let queue = format!("{}payd.commands.dead", app.vars["PAYD_AMQP__PREFIX"]);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "dead letters so far: {got:?}");
        match ch.basic_get(queue.as_str().into(), BasicGetOptions::default()).await.unwrap() {
            Some(m) => {
                let code =
                    match m.delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-payd-error").cloned())
                    {
                        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        other => panic!("no x-payd-error header: {other:?}"),
                    };
                let headers = m.delivery.properties.headers().clone().unwrap_or_default();
                assert!(!headers.contains_key("authorization"), "a dead letter kept the producer's key: {headers:?}");
                got.push((code, m.delivery.data.clone()));
                m.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    got
}

#[tokio::test]
async fn every_command_runs_with_and_without_a_reply() {
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let p = Producer::connect(&app).await;

    // payment.create, answered.
    let corr = p.command(&app.key, "create-1", "payment.create", create_data("pm_test_success", 1000), true).await;
    let reply = p.reply(&corr).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["object"], "payment");
    assert_eq!(reply["data"]["status"], "pending");
    let id = reply["data"]["id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "succeeded").await;

    // payment.create, fire and forget (any routing key reaches payd).
    let mut quiet = create_data("pm_test_success", 700);
    quiet["external_key"] = json!("quiet-1");
    let body = json!({"type": "payment.create", "data": quiet}).to_string();
    p.send(Some(&app.key), Some("create-2"), "orders.eu.whatever", body.as_bytes(), false).await;
    let found = eventually("the fire-and-forget payment", WAIT, || async {
        let (_, list) = app.get("/v1/payments?external_key=quiet-1").await;
        (list["total_count"] == 1).then(|| list["data"][0].clone())
    })
    .await;
    app.wait_status(found["id"].as_str().unwrap(), "succeeded").await;

    // payment.refund, answered and not.
    let corr = p
        .command(
            &app.key,
            "refund-1",
            "payment.refund",
            json!({"payment_id": id, "amount": 300, "reason": "returned"}),
            true,
        )
        .await;
    let reply = p.reply(&corr).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!((reply["data"]["object"].as_str(), reply["data"]["amount"].as_i64()), (Some("refund"), Some(300)));
    p.command(&app.key, "refund-2", "payment.refund", json!({"payment_id": id}), false).await;
    app.wait_payment(&id, "fully refunded", |p| p["amount_refunded"] == 1000).await;

    // payment.cancel of a payment waiting for a retry.
    let corr = p.command(&app.key, "create-3", "payment.create", create_data("pm_test_flaky", 500), true).await;
    let created = p.reply(&corr).await;
    let flaky = created["data"]["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    app.wait_payment(&flaky, "a retry scheduled", |p| p["next_attempt_at"].is_string()).await;
    let corr = p
        .command(&app.key, "cancel-1", "payment.cancel", json!({"payment_id": flaky, "reason": "changed mind"}), true)
        .await;
    let reply = p.reply(&corr).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["status"], "canceled");
    assert_eq!(reply["data"]["cancellation_reason"], "changed mind");
    let corr = p.command(&app.key, "create-4", "payment.create", create_data("pm_test_flaky", 500), true).await;
    let created = p.reply(&corr).await;
    let flaky = created["data"]["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    app.wait_payment(&flaky, "a retry scheduled", |p| p["next_attempt_at"].is_string()).await;
    p.command(&app.key, "cancel-2", "payment.cancel", json!({"payment_id": flaky}), false).await;
    app.wait_status(&flaky, "canceled").await;

    // payment.capture of an authorization, answered and not.
    let mut two_stage = create_data("pm_test_success", 900);
    two_stage["capture"] = json!(false);
    let corr = p.command(&app.key, "create-5", "payment.create", two_stage, true).await;
    let auth = p.reply(&corr).await["data"]["id"].as_str().unwrap().to_owned();
    app.wait_status(&auth, "requires_capture").await;
    let corr =
        p.command(&app.key, "capture-0", "payment.capture", json!({"payment_id": auth, "amount": 500}), true).await;
    let reply = p.reply(&corr).await;
    assert_eq!(
        (reply["ok"].as_bool(), reply["data"]["amount_capturable"].as_i64()),
        (Some(true), Some(400)),
        "{reply}"
    );
    p.command(&app.key, "capture-00", "payment.capture", json!({"payment_id": auth}), false).await;
    app.wait_payment(&auth, "fully captured", |p| p["amount_captured"] == 900).await;
    app.assert_amounts(&auth).await;

    // payment.capture of a purchase: nothing is capturable, answered like HTTP would.
    let corr = p.command(&app.key, "capture-1", "payment.capture", json!({"payment_id": id}), true).await;
    let reply = p.reply(&corr).await;
    assert_eq!((reply["ok"].as_bool(), reply["status"].as_i64()), (Some(false), Some(400)), "{reply}");
    assert_eq!(reply["error"]["code"], "payment_unexpected_state");
    p.command(&app.key, "capture-2", "payment.capture", json!({"payment_id": id, "amount": 10}), false).await;
    let dead = dead_letters(&app, &p.ch, 2).await;
    assert!(dead.iter().all(|(code, _)| code == "payment_unexpected_state"), "{dead:?}");
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_message_id_creates_nothing_new() {
    let app = TestApp::spawn().await;
    let p = Producer::connect(&app).await;
    let first = p.command(&app.key, "order-77", "payment.create", create_data("pm_test_success", 1234), true).await;
    let first = p.reply(&first).await;
    let again = p.command(&app.key, "order-77", "payment.create", create_data("pm_test_success", 1234), true).await;
    let again = p.reply(&again).await;
    assert_eq!(again["ok"], true);
    assert_eq!(again["data"]["id"], first["data"]["id"], "the same payment, answered again");
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 1);

    // The same message_id with another body is refused.
    let other = p.command(&app.key, "order-77", "payment.create", create_data("pm_test_success", 999), true).await;
    let other = p.reply(&other).await;
    assert_eq!((other["ok"].as_bool(), other["status"].as_i64()), (Some(false), Some(409)));
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    // message_id and Idempotency-Key are twins: HTTP with the same key replays too.
    let (status, http) = app
        .call_as(
            &app.key,
            "POST",
            "/v1/payments",
            Some(create_data("pm_test_success", 1234)),
            &[("Idempotency-Key", "order-77")],
        )
        .await;
    assert_eq!((status, &http["id"]), (201, &first["data"]["id"]));
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

/// (case, key, message_id, body, expected status, expected error code)
type PoisonCase<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn poison_messages_are_answered_and_dead_lettered_once() {
    let app = TestApp::spawn().await;
    let p = Producer::connect(&app).await;
    let (_, live_free_key) = app.other_merchant().await;
    let good = json!({"type": "payment.create", "data": create_data("pm_test_success", 100)}).to_string();
    let big = json!({"type": "payment.create", "data": {"description": "x".repeat(70_000)}}).to_string();
    let nul_body = json!({"type": "payment.create", "data": {"reference": "a\u{0}b"}}).to_string();
    let cases: Vec<PoisonCase> = vec![
        ("not JSON", Some(&app.key), Some("p1"), b"{not json".to_vec(), 400, "json_invalid"),
        ("not an object", Some(&app.key), Some("p2"), b"[1,2,3]".to_vec(), 400, "parameter_invalid"),
        (
            "unknown type",
            Some(&app.key),
            Some("p3"),
            br#"{"type":"payment.explode","data":{}}"#.to_vec(),
            400,
            "command_unknown",
        ),
        ("no key", None, Some("p4"), good.clone().into_bytes(), 401, "invalid_api_key"),
        ("bad key", Some("sk_test_nope"), Some("p5"), good.clone().into_bytes(), 401, "invalid_api_key"),
        (
            "invalid field",
            Some(&app.key),
            Some("p6"),
            json!({"type": "payment.create", "data": create_data("pm_test_success", -5)}).to_string().into_bytes(),
            400,
            "parameter_invalid",
        ),
        (
            "unknown field",
            Some(&live_free_key),
            Some("p7"),
            br#"{"type":"payment.create","data":{},"extra":1}"#.to_vec(),
            400,
            "parameter_unknown",
        ),
        ("no message_id", Some(&app.key), None, good.clone().into_bytes(), 400, "message_id_missing"),
        ("over 64 KiB", Some(&app.key), Some("p9"), big.into_bytes(), 413, "body_too_large"),
        // PostgreSQL refuses NULs: refused here, once, not looped on a database error.
        ("NUL in message_id", Some(&app.key), Some("p10\u{0}"), good.clone().into_bytes(), 400, "parameter_invalid"),
        ("NUL in the body", Some(&app.key), Some("p11"), nul_body.into_bytes(), 400, "parameter_invalid"),
    ];
    let mut expected_codes = Vec::new();
    for (case, key, mid, body, status, code) in &cases {
        let corr = p.send(*key, *mid, "payment.create", body, true).await;
        let reply = p.reply(&corr).await;
        assert_eq!(reply["ok"], false, "{case}: {reply}");
        assert_eq!(reply["status"], *status, "{case}: {reply}");
        assert_eq!(reply["error"]["code"], *code, "{case}: {reply}");
        assert!(reply["error"]["type"].is_string() && reply["error"]["message"].is_string(), "{case}");
        expected_codes.push(code.to_string());
    }
    let mut dead: Vec<String> = dead_letters(&app, &p.ch, cases.len()).await.into_iter().map(|(c, _)| c).collect();
    dead.sort();
    expected_codes.sort();
    assert_eq!(dead, expected_codes, "each refused message dead-lettered once, with its code");

    // The consumer is still there: the next good message is processed.
    let corr = p.send(Some(&app.key), Some("after-poison"), "payment.create", good.as_bytes(), true).await;
    let reply = p.reply(&corr).await;
    assert_eq!(reply["ok"], true, "{reply}");
    app.wait_status(reply["data"]["id"].as_str().unwrap(), "succeeded").await;
    // Nothing was requeued in a loop: each poison message got exactly one
    // reply, and the dead-letter queue holds no second copy — read after the
    // good message, which the consumer took after every poison one.
    let answered: usize = p.replies.lock().unwrap().values().map(Vec::len).sum();
    assert_eq!(answered, cases.len() + 1);
    let queue = format!("{}payd.commands.dead", app.vars["PAYD_AMQP__PREFIX"]);
    let extra = p.ch.basic_get(queue.as_str().into(), BasicGetOptions::default()).await.unwrap();
    assert!(extra.is_none(), "a message was dead-lettered twice: {:?}", extra.map(|m| m.delivery.properties.clone()));
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn a_consumer_killed_before_its_ack_processes_the_command_once() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let p = Producer::connect(&app).await;
    let mut child = crate::common::spawn(&mut payd(
        &app,
        &["serve", "--role", "worker"],
        &[("PAYD_FAULTS__CRASH_AT", "commands.before_ack")],
    ));
    let corr = p.command(&app.key, "kill-me", "payment.create", create_data("pm_test_success", 4321), true).await;
    let first = p.reply(&corr).await;
    assert!(!wait_exit(&mut child, WAIT).await.success(), "the worker died before acking");
    let worker = app.start_more(&[Role::Worker]).await;
    let replies = eventually("the redelivered command's reply", WAIT, || async {
        let r = p.replies_for(&corr);
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert_eq!(replies[1]["data"]["id"], first["data"]["id"], "the redelivery answers the first outcome");
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 1);
    app.wait_status(first["data"]["id"].as_str().unwrap(), "succeeded").await;
    worker.stop().await;
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn a_producer_flood_and_http_load_are_all_processed() {
    let app = TestApp::spawn().await;
    let p = Producer::connect(&app).await;
    let flood = async {
        for i in 0..300 {
            let body = json!({"type": "payment.create", "data": create_data("pm_test_success", 10)}).to_string();
            p.send(Some(&app.key), Some(&format!("flood-{i}")), "payment.create", body.as_bytes(), false).await;
        }
    };
    let app_ref = &app;
    let http = async move {
        for chunk in 0..10 {
            let calls = (0..10).map(|i| async move {
                let app = app_ref;
                let key = format!("http-{chunk}-{i}");
                app.call_as(
                    &app.key,
                    "POST",
                    "/v1/payments",
                    Some(create_data("pm_test_success", 20)),
                    &[("Idempotency-Key", key.as_str())],
                )
                .await
            });
            for (status, body) in futures_util::future::join_all(calls).await {
                assert_eq!(status, 201, "{body}");
            }
        }
    };
    tokio::join!(flood, http);
    eventually("all 400 payments to succeed", Duration::from_secs(60), || async {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE status = 'succeeded'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (done == 400).then_some(())
    })
    .await;
    let amqp: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE amount = 10").fetch_one(&app.pool).await.unwrap();
    assert_eq!(amqp, 300);
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

/// A message whose `message_id` is not UTF-8 cannot even be parsed by the
/// AMQP client: it takes the command consumer's connection down. payd then
/// reads the head of the queue over a plain socket and dead-letters it with
/// `x-payd-error` and without its key; the commands behind it are handled,
/// and the attempts (on their own connection) keep flowing.
#[tokio::test]
async fn a_command_with_a_property_that_is_not_utf8_does_not_stall_the_others() {
    poison_is_taken_away(TestApp::spawn().await).await;
}

/// Within a minute, or the poison stalls the queue (it did over TLS before
/// payd's reader spoke it).
const POISON_WITHIN: Duration = Duration::from_secs(60);

/// The same over `amqps://`: payd's own reader speaks TLS too, trusting the
/// CA of `amqp.ca_file` as lapin does (the proxy's certificate is signed by
/// a CA nothing else trusts).
#[tokio::test]
async fn a_command_that_is_not_utf8_is_taken_away_over_tls_too() {
    let proxy = crate::tls_proxy::TlsProxy::start(broker_addr()).await;
    let url = format!("amqps://guest:guest@localhost:{}/%2f", proxy.port);
    let ca = crate::tls_proxy::CA_FILE;
    let app = TestApp::spawn_with(&[], &[("PAYD_AMQP__URL", &url), ("PAYD_AMQP__CA_FILE", ca)]).await;
    poison_is_taken_away(app).await;
    assert!(proxy.handshakes() >= 2, "payd's connection and its reader went through TLS");
    assert_eq!(proxy.failed(), 0);
}

/// Without the CA the broker's certificate is refused, by lapin and so by
/// every role: the API says it is not ready, and nothing reached the broker.
#[tokio::test]
async fn an_amqps_broker_whose_ca_is_not_trusted_is_refused() {
    let proxy = crate::tls_proxy::TlsProxy::start(broker_addr()).await;
    let url = format!("amqps://guest:guest@localhost:{}/%2f", proxy.port);
    let app = TestApp::spawn_with(&[Role::Api], &[("PAYD_AMQP__URL", &url)]).await;
    let (status, body) = app.get("/health/ready").await;
    assert_eq!(status, 503, "{body}");
    // The proxy counts the broken-off handshake in its own task.
    eventually("the handshake to be broken off", WAIT, || async { (proxy.failed() >= 1).then_some(()) }).await;
    assert_eq!(proxy.handshakes(), 0);
    app.stop().await;
}

fn broker_addr() -> String {
    let url = std::env::var("PAYD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("127.0.0.1:5672").to_owned()
}

async fn poison_is_taken_away(app: TestApp) {
    tokio::time::timeout(POISON_WITHIN, poison_and_then(app))
        .await
        .expect("the commands behind the poison are handled");
}

async fn poison_and_then(app: TestApp) {
    let p = Producer::connect(&app).await;
    let exchange = format!("{}payd.commands", app.vars["PAYD_AMQP__PREFIX"]);
    let good = json!({"type": "payment.create", "data": create_data("pm_test_success", 321)}).to_string();
    let auth = format!("Bearer {}", app.key);
    crate::raw_amqp::publish(&broker_addr(), &exchange, "payment.create", b"\xff\xfe-poison", &auth, good.as_bytes())
        .await;
    // Commands published behind it, and a payment over HTTP meanwhile.
    let corr =
        p.command(&app.key, "after-the-poison", "payment.create", create_data("pm_test_success", 654), true).await;
    let http = app.create_payment("pm_test_success", 987).await;
    app.wait_status(http["id"].as_str().unwrap(), "succeeded").await;
    let reply = p.reply(&corr).await;
    assert_eq!(reply["ok"], true, "{reply}");
    app.wait_status(reply["data"]["id"].as_str().unwrap(), "succeeded").await;
    let poisoned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE amount = 321").fetch_one(&app.pool).await.unwrap();
    assert_eq!(poisoned, 0, "the unparseable command created nothing");
    // payd read it past the client library and dead-lettered it itself: with
    // its code, without the producer's key (dead_letters checks that).
    let dead = dead_letters(&app, &p.ch, 1).await;
    assert_eq!(dead[0].0, "parameter_invalid");
    assert_eq!(dead[0].1, good.as_bytes(), "the body is kept for the operator");
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

/// A dead letter the broker cannot take (its dead queue is gone: deleted
/// by hand, or not yet re-declared after a broker's loss) is neither
/// dropped nor requeued: the publish is `mandatory`, so the broker returns
/// it instead of confirming a message it threw away, and payd holds the
/// delivery and retries in place (a requeue would spend the queue's
/// delivery limit, at which the broker dead-letters the message itself,
/// keeping the producer's key). Once the dead queue is back, it is there.
#[tokio::test]
async fn a_dead_letter_the_broker_cannot_take_is_held_until_it_can() {
    let app = TestApp::spawn().await;
    let p = Producer::connect(&app).await;
    let dead_queue = format!("{}payd.commands.dead", app.vars["PAYD_AMQP__PREFIX"]);
    p.ch.queue_delete(dead_queue.as_str().into(), Default::default()).await.unwrap();
    let good = json!({"type": "payment.create", "data": create_data("pm_test_success", 10)}).to_string();
    let corr = p.send(Some("sk_test_nope"), Some("refused-dead-letter"), "payment.create", good.as_bytes(), true).await;
    let reply = p.reply(&corr).await;
    assert_eq!(reply["error"]["code"], "invalid_api_key", "{reply}");
    // A few of payd's tries find no queue.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    p.ch.queue_declare(dead_queue.as_str().into(), durable, args).await.unwrap();
    // dead_letters checks that it came from payd (x-payd-error) without the key.
    let dead = dead_letters(&app, &p.ch, 1).await;
    assert_eq!(dead, vec![("invalid_api_key".to_owned(), good.into_bytes())]);
    // Held, not requeued: no delivery of the queue's limit was spent on it.
    let text = crate::observe::metrics(&app).await;
    let requeued = crate::observe::value(&text, "payd_queue_consumed_total", &[r#"result="requeue""#]);
    assert_eq!(requeued, 0.0, "requeued while its dead queue was missing");
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}
