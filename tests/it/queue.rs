//! The work queue: redelivered and duplicate messages change nothing; poison
//! messages are dead-lettered once and never stop the consumer.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use payd::app::Role;
use serde_json::json;

use crate::common::{TestApp, WAIT};

async fn channel() -> (Connection, Channel) {
    let url = std::env::var("PAYD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

async fn publish(ch: &Channel, queue: &str, body: &[u8]) {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
}

fn queue(app: &TestApp, base: &str) -> String {
    format!("{}{base}", app.vars["PAYD_AMQP__PREFIX"])
}

async fn attempt_of(app: &TestApp, payment: &str) -> String {
    sqlx::query_scalar("SELECT id FROM attempts WHERE payment_id = $1")
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_redelivered_message_does_not_process_twice() {
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 900).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let attempt = attempt_of(&app, id).await;

    // The same command again, twice, as a redelivery or a relay crash would send it.
    let (conn, ch) = channel().await;
    let msg = json!({"type": "attempt.run", "attempt_id": attempt}).to_string();
    for _ in 0..2 {
        publish(&ch, &queue(&app, "payd.attempts"), msg.as_bytes()).await;
    }
    // A later payment completing shows the queue has moved past them.
    let later = app.create_payment("pm_test_success", 1).await;
    app.wait_status(later["id"].as_str().unwrap(), "succeeded").await;

    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    let mine: Vec<_> = charges.iter().filter(|c| c.amount == 900).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].calls, 1, "the claim guard stops the provider call");
    assert_eq!(app.count("SELECT count(*) FROM events WHERE payment_id = $1", id).await, 2, "created + succeeded only");
    let (_, p) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!((p["attempt_count"].as_i64(), p["amount_captured"].as_i64()), (Some(1), Some(900)));
    conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn duplicate_messages_racing_on_two_workers_charge_once() {
    let app = TestApp::spawn_with(&[Role::Api], &[]).await;
    let mut ids = Vec::new();
    let (conn, ch) = channel().await;
    for _ in 0..5 {
        let p = app.create_payment("pm_test_success", 250).await;
        let id = p["id"].as_str().unwrap().to_owned();
        let msg = json!({"type": "attempt.run", "attempt_id": attempt_of(&app, &id).await}).to_string();
        for _ in 0..3 {
            publish(&ch, &queue(&app, "payd.attempts"), msg.as_bytes()).await;
        }
        ids.push(id);
    }
    let w1 = app.start_more(&[Role::Worker]).await;
    let w2 = app.start_more(&[Role::Worker]).await;
    for id in &ids {
        app.wait_status(id, "succeeded").await;
    }
    let charges = payd::testing::sandbox_charges(&app.pool).await.unwrap();
    assert_eq!(charges.len(), 5);
    assert!(charges.iter().all(|c| c.calls == 1), "{charges:?}");
    for id in &ids {
        assert_eq!(
            app.count("SELECT count(*) FROM events WHERE payment_id = $1 AND type = 'payment.succeeded'", id).await,
            1
        );
    }
    conn.close(200, "bye".into()).await.ok();
    w1.stop().await;
    w2.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_next_one_is_processed() {
    let app = TestApp::spawn().await;
    let (conn, ch) = channel().await;
    let work = queue(&app, "payd.attempts");
    publish(&ch, &work, b"not json at all").await;
    publish(&ch, &work, br#"{"type":"attempt.explode"}"#).await;
    publish(&ch, &work, br#"[1,2,3]"#).await;

    let p = app.create_payment("pm_test_success", 300).await;
    app.wait_status(p["id"].as_str().unwrap(), "succeeded").await;

    let dead = queue(&app, "payd.attempts.dead");
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while bodies.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "dead letters so far: {bodies:?}");
        match ch.basic_get(dead.as_str().into(), BasicGetOptions::default()).await.unwrap() {
            Some(m) => {
                let headers = m.delivery.properties.headers().clone().unwrap_or_default();
                let err = headers.inner().get("x-payd-error").cloned();
                assert_eq!(err, Some(AMQPValue::LongString("message_invalid".into())));
                bodies.push(String::from_utf8(m.delivery.data.clone()).unwrap());
                m.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["[1,2,3]", "not json at all", r#"{"type":"attempt.explode"}"#]);
    conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}
