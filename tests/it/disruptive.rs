//! Restarts of the real RabbitMQ and PostgreSQL under a running payd. These
//! disturb every other test, so `scripts/test` runs them alone, one at a time,
//! after the rest (their names start with `disruptive_`). Where the service
//! cannot be restarted from here, the test says so and passes without it.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::chaos::{SANDBOX_CHARGES, assert_promise_kept, burst, burst_without_keys};
use crate::common::{Receiver, TestApp, eventually, verify_webhook};
use crate::producers::{Producer, create_data};

/// Outages take longer than the usual waits: reconnect backoff included.
const OUTAGE_WAIT: Duration = Duration::from_secs(90);

fn run(cmd: &str, args: &[&str]) -> bool {
    match Command::new(cmd).args(args).status() {
        Ok(s) => s.success(),
        Err(_) => false,
    }
}

async fn ready(app: &TestApp) -> Value {
    match app.http.get(format!("{}/health/ready", app.base)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let mut body: Value = r.json().await.unwrap_or(Value::Null);
            body["http_status"] = json!(status);
            body
        }
        Err(_) => json!({"http_status": 0}),
    }
}

/// Creates a payment, retrying while payd answers 5xx (a dependency is down).
async fn create_during_outage(app: &TestApp, key: &str) -> String {
    eventually("a payment to be accepted", OUTAGE_WAIT, || async {
        let (status, body) = app
            .call_as(
                &app.key,
                "POST",
                "/v1/payments",
                Some(json!({"amount": 500, "currency": "USD", "payment_method_id": "pm_test_success"})),
                &[("Idempotency-Key", key)],
            )
            .await;
        (status == 201).then(|| body["id"].as_str().unwrap().to_owned())
    })
    .await
}

async fn delivered(app: &TestApp, receiver: &Receiver, secret: &str, id: &str) {
    app.wait_payment(id, "succeeded after the outage", |p| p["status"] == "succeeded").await;
    let hook = eventually(&format!("payment.succeeded for {id}"), OUTAGE_WAIT, || async {
        receiver
            .all()
            .into_iter()
            .find(|r| r.json()["type"] == "payment.succeeded" && r.json()["data"]["object"]["id"] == id)
    })
    .await;
    assert!(verify_webhook(secret, &hook));
}

/// The version of the local cluster `pg_ctlcluster` can stop and start.
fn postgres_cluster() -> Option<String> {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    version.filter(|_| Command::new("pg_ctlcluster").output().is_ok())
}

/// A disruptive test that cannot disrupt here: fails when
/// `PAYD_REQUIRE_DISRUPTIVE=1` (as `scripts/test` sets it), else says so.
fn skip(why: &str) {
    assert!(std::env::var("PAYD_REQUIRE_DISRUPTIVE").as_deref() != Ok("1"), "cannot run: {why}");
    eprintln!("SKIPPED: {why}");
}

#[tokio::test]
async fn disruptive_rabbitmq_dropped_and_restarted_mid_load_loses_nothing() {
    if !run("rabbitmqctl", &["-q", "status"]) {
        skip("rabbitmqctl cannot reach a local RabbitMQ, so the broker cannot be restarted here");
        return;
    }
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let before = app.create_payment("pm_test_success", 100).await;
    delivered(&app, &receiver, &secret, before["id"].as_str().unwrap()).await;

    let outage = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // First every connection is dropped under payd's feet; then the broker goes away.
        assert!(
            run("rabbitmqctl", &["-q", "close_all_connections", "payd test: connection dropped"]),
            "dropping connections"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(run("rabbitmqctl", &["-q", "stop_app"]), "stopping RabbitMQ");
        let down = eventually("/health/ready to say 503", OUTAGE_WAIT, || async {
            let r = ready(&app).await;
            (r["http_status"] == 503).then_some(r)
        })
        .await;
        assert_eq!(down["rabbitmq"], "unavailable");
        assert_eq!(down["postgres"], "ok");
        // Intake keeps working: the payment waits in the outbox.
        let during = create_during_outage(&app, "during-broker-outage").await;
        let (_, p) = app.get(&format!("/v1/payments/{during}")).await;
        assert_eq!(p["status"], "pending");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(run("rabbitmqctl", &["-q", "start_app"]), "starting RabbitMQ");
        during
    };
    let (mut ids, during) = tokio::join!(burst(&app, "broker", 40, "pm_test_success"), outage);
    ids.push(during);
    eventually("/health/ready to say 200", OUTAGE_WAIT, || async {
        (ready(&app).await["http_status"] == 200).then_some(())
    })
    .await;
    let after = create_during_outage(&app, "after-broker-outage").await;
    ids.push(after);
    assert_promise_kept(&app, &ids, &[(&receiver, &secret)], SANDBOX_CHARGES).await;
    app.stop().await;
}

#[tokio::test]
async fn disruptive_postgres_restarted_mid_load_loses_nothing() {
    let Some(version) = postgres_cluster() else {
        skip("no local PostgreSQL cluster that pg_ctlcluster can restart here");
        return;
    };
    // Phase timings go to stderr: inside the full suite this test has taken
    // 75 s instead of 10 s, and the log shows where.
    let t0 = std::time::Instant::now();
    let phase = |name: &str| eprintln!("disruptive postgres: {name} at {:?}", t0.elapsed());
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let before = app.create_payment("pm_test_success", 100).await;
    let outage = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        phase("stopping");
        if !run("pg_ctlcluster", &["--skip-systemctl-redirect", &version, "main", "stop", "-m", "fast"]) {
            return false;
        }
        phase("stopped");
        let down = eventually("/health/ready to say 503", OUTAGE_WAIT, || async {
            let r = ready(&app).await;
            (r["http_status"] == 503).then_some(r)
        })
        .await;
        assert_eq!(down["postgres"], "unavailable");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(run("pg_ctlcluster", &["--skip-systemctl-redirect", &version, "main", "start"]), "starting PostgreSQL");
        phase("started");
        true
    };
    let (mut ids, keyless, restarted) = tokio::join!(
        burst(&app, "postgres", 40, "pm_test_success"),
        burst_without_keys(&app, 20, "pm_test_success"),
        outage
    );
    assert!(!keyless.is_empty(), "no create without a key was accepted: the group commit went untested");
    ids.extend(keyless);
    if !restarted {
        skip(&format!("pg_ctlcluster could not stop PostgreSQL {version} (not root?)"));
        app.stop().await;
        return;
    }
    phase("burst answered");
    ids.push(before["id"].as_str().unwrap().to_owned());
    ids.push(create_during_outage(&app, "after-postgres-restart").await);
    eventually("/health/ready to say 200", OUTAGE_WAIT, || async {
        (ready(&app).await["http_status"] == 200).then_some(())
    })
    .await;
    phase("ready again");
    assert_promise_kept(&app, &ids, &[(&receiver, &secret)], SANDBOX_CHARGES).await;
    phase("promise kept");
    app.stop().await;
}

/// Commands queued while Postgres is down for longer than the command
/// queue's delivery limit would last (20 redeliveries, about ten seconds of
/// nack-and-requeue) are all handled once it is back: none is dead-lettered
/// without a reply, none is lost.
#[tokio::test]
async fn disruptive_postgres_down_longer_than_the_delivery_limit_loses_no_command() {
    let Some(version) = postgres_cluster() else {
        skip("no local PostgreSQL cluster that pg_ctlcluster can restart here");
        return;
    };
    let app = TestApp::spawn().await;
    let p = Producer::connect(&app).await;
    if !run("pg_ctlcluster", &["--skip-systemctl-redirect", &version, "main", "stop", "-m", "fast"]) {
        skip(&format!("pg_ctlcluster could not stop PostgreSQL {version} (not root?)"));
        app.stop().await;
        return;
    }
    let mut corrs = Vec::new();
    for i in 0..8 {
        let data = create_data("pm_test_success", 100 + i);
        corrs.push(p.command(&app.key, &format!("outage-{i}"), "payment.create", data, true).await);
    }
    // The outage itself: longer than the delivery limit and than a hold,
    // so commands are held, copied back to the queue and held again.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(run("pg_ctlcluster", &["--skip-systemctl-redirect", &version, "main", "start"]), "starting PostgreSQL");
    let mut ids = Vec::new();
    for corr in &corrs {
        let reply = eventually(&format!("the reply for {corr}"), OUTAGE_WAIT, || async {
            p.replies_for(corr).into_iter().next()
        })
        .await;
        assert_eq!(reply["ok"], true, "{reply}");
        ids.push(reply["data"]["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_status(id, "succeeded").await;
    }
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE merchant_id = $1", app.merchant.as_str()).await, 8);
    let dead = format!("{}payd.commands.dead", app.vars["PAYD_AMQP__PREFIX"]);
    let extra = p.ch.basic_get(dead.as_str().into(), lapin::options::BasicGetOptions::default()).await.unwrap();
    assert!(extra.is_none(), "a command was dead-lettered: {:?}", extra.map(|m| m.delivery.properties.clone()));
    p.conn.close(200, "bye".into()).await.ok();
    app.stop().await;
}
