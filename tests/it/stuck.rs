//! Stuck transactions (contract §14): an outcome that stayed unknown after
//! the inquiry schedule is listed for operators and settled by their word,
//! exactly as the provider's answer would have settled it (amounts, events,
//! webhooks), with the operator and the reason in the audit log. Also the
//! operator gauges on `/metrics`.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

use crate::common::{Receiver, TestApp, WAIT, eventually, payd, run_json, verify_webhook};
use crate::toolkit::{key_id, ops_key};

/// A gateway whose charges answer after payd's 300 ms timeout and whose
/// inquiries cannot tell (503): every charge stays unknown.
pub(crate) async fn undecided_gateway() -> MockServer {
    crate::unknown::slow_gateway(ResponseTemplate::new(503)).await
}

/// payd with that gateway as `acme`, its retry and inquiry 200 ms apart.
pub(crate) async fn stuck_app(gateway: &MockServer) -> TestApp {
    crate::unknown::app_with(gateway, &[("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "200ms")]).await
}

/// A payment whose charge is left unknown for an operator; answers (payment, transaction).
pub(crate) async fn stuck_payment(app: &TestApp, amount: i64) -> (String, String) {
    let p = app.create_payment(&app.payment_method("acme", "tok_visa").await, amount).await;
    let id = p["id"].as_str().unwrap().to_owned();
    eventually("the inquiry schedule to be used up", Duration::from_secs(30), || async {
        let (open, status): (i64, String) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM attempts WHERE payment_id = $1 AND status IN ('scheduled', 'running')),
                    (SELECT status FROM transactions WHERE payment_id = $1)",
        )
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (open == 0 && status == "unknown").then_some(())
    })
    .await;
    let txn = sqlx::query_scalar("SELECT id FROM transactions WHERE payment_id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    (id, txn)
}

async fn metrics(app: &TestApp) -> String {
    app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap()
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn operators_list_and_resolve_stuck_transactions() {
    let gateway = undecided_gateway().await;
    let app = stuck_app(&gateway).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.add_endpoint(&receiver.url).await;
    let ops = ops_key(&app).await;
    let (paid, paid_txn) = stuck_payment(&app, 1500).await;
    let (lost, lost_txn) = stuck_payment(&app, 800).await;

    // Merchants may not see or settle them.
    let (status, _) = app.get("/v1/transactions?status=unknown").await;
    assert_eq!(status, 403);
    let resolve = format!("/v1/transactions/{paid_txn}/resolve");
    let (status, _) = app.post(&resolve, json!({"status": "succeeded", "reason": "x"})).await;
    assert_eq!(status, 403);
    let (status, list) = app.call_as(&ops, "GET", "/v1/transactions?status=unknown&limit=10", None, &[]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total_count"], 2);
    let listed: Vec<&str> = list["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [paid_txn.as_str(), lost_txn.as_str()], "the longest stuck first");
    let (status, _) = app.call_as(&ops, "GET", "/v1/transactions?status=pending", None, &[]).await;
    assert_eq!(status, 400);
    eventually("the unknown gauges", WAIT, || async {
        let text = metrics(&app).await;
        let oldest = gauge(&text, "payd_transactions_unknown_oldest_age_seconds").unwrap_or(0.0);
        (gauge(&text, "payd_transactions_unknown") == Some(2.0) && oldest > 0.0).then_some(())
    })
    .await;

    for (body, why) in [
        (json!({"status": "succeeded"}), "no reason"),
        (json!({"status": "refunded", "reason": "x"}), "a bad status"),
        (json!({"status": "succeeded", "reason": "x", "amount": 1}), "an unknown field"),
    ] {
        let (status, err) = app.call_as(&ops, "POST", &resolve, Some(body), &[]).await;
        assert_eq!(status, 400, "{why}: {err}");
    }
    let body =
        json!({"status": "succeeded", "provider_reference": "gw_ch_manual", "reason": "seen in the acme dashboard"});
    let (status, txn) = app.call_as(&ops, "POST", &resolve, Some(body.clone()), &[]).await;
    assert_eq!(status, 200, "{txn}");
    assert_eq!(
        (txn["object"].as_str(), txn["status"].as_str(), txn["provider_reference"].as_str()),
        (Some("transaction"), Some("succeeded"), Some("gw_ch_manual"))
    );
    let payment = app.assert_amounts(&paid).await;
    assert_eq!((payment["status"].as_str(), payment["amount_captured"].as_i64()), (Some("succeeded"), Some(1500)));
    assert_eq!(payment["provider_reference"], "gw_ch_manual");
    let hook = receiver.wait_for("payment.succeeded", &paid).await;
    assert!(verify_webhook(&secret, &hook));
    let ops_id = key_id(&app, "ops").await;
    let (_, log) = app.get(&format!("/v1/payments/{paid}/audit_log")).await;
    let entry = log["data"].as_array().unwrap().iter().find(|e| e["action"] == "transaction.resolve").cloned();
    let entry = entry.unwrap_or_else(|| panic!("no audit entry: {log}"));
    assert_eq!(entry["actor"], ops_id.as_str());
    assert_eq!(entry["reason"], "seen in the acme dashboard");
    assert_eq!(entry["changes"]["status"], json!({"from": "pending", "to": "succeeded"}));
    let (status, err) = app.call_as(&ops, "POST", &resolve, Some(body), &[]).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("transaction_not_unknown")), "{err}");
    let (status, _) = app
        .call_as(
            &ops,
            "POST",
            "/v1/transactions/txn_00000000000000000000000000000000/resolve",
            Some(json!({"status": "failed", "reason": "x"})),
            &[],
        )
        .await;
    assert_eq!(status, 404);

    // The other, from the command line: failed.
    let settled =
        run_json(&app, &["transactions", "resolve", &lost_txn, "--status", "failed", "--reason", "never charged"]);
    assert_eq!((settled["status"].as_str(), settled["error_code"].as_str()), (Some("failed"), Some("resolved_failed")));
    let failed = app.wait_status(&lost, "failed").await;
    assert_eq!(
        (failed["error_code"].as_str(), failed["failure_message"].as_str()),
        (Some("resolved_failed"), Some("never charged"))
    );
    assert_eq!(failed["amount_captured"], 0);
    let hook = receiver.wait_for("payment.failed", &lost).await;
    assert!(verify_webhook(&secret, &hook));
    let out = payd(&app, &["transactions", "resolve", &lost_txn, "--status", "failed", "--reason", "again"], &[])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "transaction_not_unknown");
    let (_, list) = app.call_as(&ops, "GET", "/v1/transactions", None, &[]).await;
    assert_eq!(list["total_count"], 0, "{list}");
    app.stop().await;
}

#[tokio::test]
async fn the_disabled_endpoints_gauge_follows_the_endpoints() {
    let app = TestApp::spawn().await;
    let (id, _) = app.add_endpoint("http://127.0.0.1:9/hook").await;
    let (status, body) = app.post(&format!("/v1/webhook_endpoints/{id}"), json!({"status": "disabled"})).await;
    assert_eq!(status, 200, "{body}");
    eventually("the disabled-endpoints gauge", WAIT, || async {
        (gauge(&metrics(&app).await, "payd_webhook_endpoints_disabled") == Some(1.0)).then_some(())
    })
    .await;
    let (status, _) = app.post(&format!("/v1/webhook_endpoints/{id}"), json!({"status": "enabled"})).await;
    assert_eq!(status, 200);
    eventually("the gauge back to 0", WAIT, || async {
        (gauge(&metrics(&app).await, "payd_webhook_endpoints_disabled") == Some(0.0)).then_some(())
    })
    .await;
    app.stop().await;
}
