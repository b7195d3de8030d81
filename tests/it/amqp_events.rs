//! Events on AMQP (`amqp.publish_events`, contract §13): every event reaches
//! the topic exchange `<prefix>payd.events` from the outbox, after its
//! commit, at least once — also when the relay is killed between publishing
//! a batch and deleting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use payd::app::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, WAIT, eventually, payd, wait_exit};

/// What a consumer bound to the events exchange with `#` received:
/// (routing key, message id, body).
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn bind_consumer(app: &TestApp, pattern: &str) -> (Connection, Received) {
    let url = std::env::var("PAYD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let exchange = format!("{}payd.events", app.vars["PAYD_AMQP__PREFIX"]);
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(exchange.as_str().into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())
        .await
        .unwrap();
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let q = ch.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
    let options = QueueBindOptions::default();
    ch.queue_bind(q.name().as_str().into(), exchange.as_str().into(), pattern.into(), options, FieldTable::default())
        .await
        .unwrap();
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer =
        ch.basic_consume(q.name().as_str().into(), "".into(), no_ack, FieldTable::default()).await.unwrap();
    let received: Received = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let id = d.properties.message_id().as_ref().map(|m| m.to_string()).unwrap_or_default();
            let body = serde_json::from_slice(&d.data).unwrap_or(Value::Null);
            sink.lock().unwrap().push((d.routing_key.to_string(), id, body));
        }
    });
    (conn, received)
}

/// Creates a payment; `None` when the payd at `app.base` is gone.
async fn try_create(app: &TestApp, amount: i64) -> Option<String> {
    let body = json!({"amount": amount, "currency": "USD", "payment_method_id": "pm_test_success"});
    let r = app.http.post(format!("{}/v1/payments", app.base)).bearer_auth(&app.key).json(&body).send().await.ok()?;
    assert_eq!(r.status(), 201);
    Some(r.json::<Value>().await.ok()?["id"].as_str()?.to_owned())
}

#[tokio::test]
async fn every_event_reaches_the_exchange_at_least_once_through_a_relay_killed_mid_stream() {
    // In this process only the dispatcher (no relay); the api, worker and
    // relay run in a child that aborts after its first published batch of
    // events, before deleting it from the outbox.
    let mut app = TestApp::spawn_with(&[Role::Dispatcher], &[("PAYD_AMQP__PUBLISH_EVENTS", "true")]).await;
    let (_conn, received) = bind_consumer(&app, "#").await;
    let (_other_conn, others) = bind_consumer(&app, "mer_nobody.#").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = crate::common::spawn(&mut payd(
        &app,
        &["serve", "--role", "api", "--role", "worker"],
        &[("PAYD_HTTP__LISTEN", &listen), ("PAYD_FAULTS__CRASH_AT", "relay.after_publish")],
    ));
    app.base = format!("http://{listen}");
    eventually("the child to be ready", WAIT, || async {
        let r = app.http.get(format!("{}/health/ready", app.base)).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let mut payments = Vec::new();
    for i in 0..50 {
        match try_create(&app, 100 + i).await {
            Some(id) => payments.push(id),
            None => break,
        }
    }
    assert!(!payments.is_empty(), "the child accepted payments before it died");
    let exit = wait_exit(&mut child, WAIT).await;
    assert!(!exit.success(), "the relay aborted after publishing");
    let published_before = received.lock().unwrap().len();
    assert!(published_before > 0, "the batch was published before the crash");

    // A healthy api, worker and relay take over; the stream goes on.
    let more = app.start_more(&[Role::Api, Role::Worker]).await;
    app.base = format!("http://{}", more.addr.unwrap());
    for i in 0..5 {
        payments.push(try_create(&app, 500 + i).await.expect("created"));
    }
    // Every payment committed, also one whose answer the crash cut off.
    let payments: Vec<String> = sqlx::query_scalar("SELECT id FROM payments WHERE merchant_id = $1")
        .bind(&app.merchant)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for id in &payments {
        app.wait_status(id, "succeeded").await;
    }
    let events: Vec<(String, String)> = sqlx::query_as("SELECT id, type FROM events WHERE merchant_id = $1")
        .bind(&app.merchant)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(events.len() >= 2 * payments.len(), "created and succeeded for each payment");
    let got = eventually("every event on the exchange", WAIT, || async {
        let got = received.lock().unwrap().clone();
        let ids: std::collections::HashSet<&str> = got.iter().map(|(_, id, _)| id.as_str()).collect();
        events.iter().all(|(id, _)| ids.contains(id.as_str())).then_some(got)
    })
    .await;
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (key, id, body) in &got {
        *times.entry(id.as_str()).or_default() += 1;
        let kind = &events.iter().find(|(e, _)| e == id).expect("only this merchant's events").1;
        assert_eq!(key, &format!("{}.{kind}", app.merchant), "routing key <merchant_id>.<type>");
        assert_eq!((body["id"].as_str(), body["type"].as_str()), (Some(id.as_str()), Some(kind.as_str())), "{body}");
        assert_eq!(body["object"], "event");
        assert!(payments.iter().any(|p| body["data"]["object"]["id"] == *p), "the webhook body: {body}");
    }
    assert!(times.values().any(|n| *n > 1), "the batch published before the crash went again (at least once)");
    assert!(others.lock().unwrap().is_empty(), "a binding for another merchant gets nothing");
    more.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn without_the_setting_no_event_is_published() {
    let app = TestApp::spawn().await;
    let (_conn, received) = bind_consumer(&app, "#").await;
    let p = app.create_payment("pm_test_success", 100).await;
    app.wait_status(p["id"].as_str().unwrap(), "succeeded").await;
    // The relay has published the payment's work message by now; an event
    // copy would have gone in the same pass.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(received.lock().unwrap().is_empty(), "published with amqp.publish_events off");
    app.stop().await;
}
