//! The operator toolkit through the console, in a real browser (see
//! `console.rs`): resolving a transaction whose outcome stayed unknown, and
//! running a scheduled retry now, each checked through the API.

use fantoccini::Locator;

use crate::common::{TestApp, WAIT, eventually};
use crate::console::{browser, confirm_dialog, find, heading, screenshot, sign_in, text_of};
use crate::stuck::{stuck_app, stuck_payment, undecided_gateway};
use crate::toolkit::ops_key;

#[tokio::test]
async fn console_browser_resolves_an_unknown_transaction() {
    let Some(c) = browser().await else { return };
    let gateway = undecided_gateway().await;
    let app = stuck_app(&gateway).await;
    let (payment, txn) = stuck_payment(&app, 1500).await;
    let ops = ops_key(&app).await;
    assert_eq!(sign_in(&c, &app, &ops).await, "Attempts");
    c.goto(&format!("{}/console/transactions", app.base)).await.unwrap();
    assert_eq!(heading(&c).await, "Unknown transactions");
    let row = find(&c, &format!("tr[data-transaction='{txn}']")).await;
    screenshot(&c, "operator-unknown-transactions").await;
    let reference = row.find(Locator::Css("input[name=provider_reference]")).await.unwrap();
    reference.clear().await.unwrap();
    reference.send_keys("gw_ch_late").await.unwrap();
    row.find(Locator::Css("input[name=reason]"))
        .await
        .unwrap()
        .send_keys("charged per the gateway's dashboard")
        .await
        .unwrap();
    row.find(Locator::Css("button.resolve")).await.unwrap().click().await.unwrap();
    confirm_dialog(&c).await;
    let flash = text_of(&c, "#flash").await;
    assert!(flash.contains("succeeded"), "{flash}");
    // The API agrees: the payment is paid with the operator's reference.
    let paid = app.wait_status(&payment, "succeeded").await;
    assert_eq!(paid["amount_captured"], 1500);
    let (status, t): (String, Option<String>) =
        sqlx::query_as("SELECT status, provider_reference FROM transactions WHERE id = $1")
            .bind(&txn)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), t.as_deref()), ("succeeded", Some("gw_ch_late")));
    c.goto(&format!("{}/console/transactions", app.base)).await.unwrap();
    assert!(text_of(&c, "table").await.contains("No transaction waits"), "nothing left to resolve");
    c.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn console_browser_runs_a_scheduled_retry_now() {
    let Some(c) = browser().await else { return };
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h,1h")]).await;
    let p = app.create_payment("pm_test_flaky", 900).await;
    let id = p["id"].as_str().unwrap();
    app.wait_payment(id, "a retry scheduled", |p| p["next_attempt_at"].is_string()).await;
    let (_, list) = app.get(&format!("/v1/attempts?status=scheduled&payment_id={id}")).await;
    let attempt = list["data"][0]["id"].as_str().expect("a scheduled attempt").to_owned();
    let ops = ops_key(&app).await;
    assert_eq!(sign_in(&c, &app, &ops).await, "Attempts");
    let row = find(&c, &format!("tr[data-attempt='{attempt}']")).await;
    row.find(Locator::Css("button.retry-now")).await.unwrap().click().await.unwrap();
    confirm_dialog(&c).await;
    let flash = text_of(&c, "#flash").await;
    assert!(flash.contains(&attempt), "{flash}");
    // It ran at once, not in an hour: the attempt is done and the next one scheduled.
    eventually("the attempt ran", WAIT, || async {
        let (_, after) = app.get(&format!("/v1/attempts?payment_id={id}")).await;
        let a = after["data"].as_array()?.iter().find(|a| a["id"] == attempt.as_str())?.clone();
        (a["status"] == "failed" || a["status"] == "succeeded").then_some(())
    })
    .await;
    c.close().await.unwrap();
    app.stop().await;
}
