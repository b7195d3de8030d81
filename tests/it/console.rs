//! The console in a real browser: Debian's headless Chromium driven over
//! WebDriver (fantoccini). `scripts/test` installs it and starts
//! chromedriver (scripts/lib/browser.sh), exporting `PAYD_WEBDRIVER`, and
//! sets `PAYD_REQUIRE_BROWSER=1`, so there a missing browser fails these
//! tests; elsewhere they are skipped with a message. Each test checks what
//! it did in the browser through the API. With `PAYD_CONSOLE_SCREENSHOTS=1`
//! the pages they visit are saved to `docs/console/` for the README.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use payd::testing::KeyKind;
use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, WAIT, eventually};

/// A browser session, or `None` (the test skips) when no WebDriver is given
/// and none is required.
pub(crate) async fn browser() -> Option<Client> {
    let Ok(url) = std::env::var("PAYD_WEBDRIVER") else {
        assert!(
            std::env::var("PAYD_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "PAYD_REQUIRE_BROWSER=1 but PAYD_WEBDRIVER is not set: run scripts/test, or \
             `. scripts/lib/services.sh; . scripts/lib/browser.sh; ensure_browser && start_webdriver`"
        );
        eprintln!("skipping a console browser test: PAYD_WEBDRIVER is not set (scripts/test sets it)");
        return None;
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium",
               "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"]}),
    );
    let client = ClientBuilder::rustls().expect("TLS roots").capabilities(caps).connect(&url).await;
    Some(client.unwrap_or_else(|e| panic!("no browser session from {url}: {e}")))
}

/// Waits for an element, longer than WebDriver's default.
pub(crate) async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
}

/// The text of an element, read again if the page changed under the read.
pub(crate) async fn text_of(c: &Client, css: &str) -> String {
    eventually(css, WAIT, || async { c.find(Locator::Css(css)).await.ok()?.text().await.ok() }).await
}

/// The page's heading; read again when the page changed under the read
/// (a navigation makes the element found a moment ago stale).
pub(crate) async fn heading(c: &Client) -> String {
    eventually("a page heading", WAIT, || async { c.find(Locator::Css("h1")).await.ok()?.text().await.ok() }).await
}

/// Signs in through the form; answers the page's heading.
pub(crate) async fn sign_in(c: &Client, app: &TestApp, key: &str) -> String {
    c.goto(&format!("{}/console/sign_in", app.base)).await.unwrap();
    find(c, "#key").await.send_keys(key).await.unwrap();
    find(c, "#sign-in button").await.click().await.unwrap();
    // The next page has loaded once its heading is not the sign-in form's, or an error shows.
    eventually("the sign-in answered", WAIT, || async {
        let h = heading(c).await;
        (h != "Sign in" || c.find(Locator::Css("#error")).await.is_ok()).then_some(h)
    })
    .await
}

/// Accepts the confirmation dialog of a destructive submit.
pub(crate) async fn confirm_dialog(c: &Client) {
    eventually("the confirmation dialog", WAIT, || async { c.accept_alert().await.ok() }).await;
}

/// Saves a screenshot of the current page as docs/console/NAME.png, when asked to.
pub(crate) async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if std::env::var("PAYD_CONSOLE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test]
async fn console_browser_signs_in_refuses_wrong_keys_and_forms_without_csrf() {
    let Some(c) = browser().await else { return };
    let app = TestApp::spawn().await;
    c.goto(&format!("{}/console", app.base)).await.unwrap();
    assert_eq!(heading(&c).await, "Sign in", "no session: the sign-in page");
    screenshot(&c, "sign-in").await;
    assert_eq!(sign_in(&c, &app, "sk_test_not_a_key").await, "Sign in");
    assert!(text_of(&c, "#error").await.contains("invalid API key"));
    let publishable =
        payd::testing::add_key(&app.pool, Some(&app.merchant), KeyKind::Publishable, false).await.unwrap();
    assert_eq!(sign_in(&c, &app, &publishable).await, "Sign in", "a publishable key does not sign in");
    let ops = payd::testing::add_key(&app.pool, None, KeyKind::Ops, false).await.unwrap();
    assert_eq!(sign_in(&c, &app, &ops).await, "Attempts", "an operator lands on the attempts");
    // The cookie is out of the script's reach.
    let seen = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(seen, Value::String(String::new()), "the session cookie is HttpOnly");
    // The sign-out form without its CSRF field is refused, and the session stays.
    c.execute("document.querySelector('header input[name=csrf]').remove()", vec![]).await.unwrap();
    find(&c, "#sign-out").await.click().await.unwrap();
    eventually("the refusal", WAIT, || async { (heading(&c).await == "Error 403").then_some(()) }).await;
    assert!(text_of(&c, "#error").await.contains("CSRF"));
    c.goto(&format!("{}/console/attempts", app.base)).await.unwrap();
    assert_eq!(heading(&c).await, "Attempts");
    find(&c, "#sign-out").await.click().await.unwrap();
    eventually("signed out", WAIT, || async { (heading(&c).await == "Sign in").then_some(()) }).await;
    c.goto(&format!("{}/console/attempts", app.base)).await.unwrap();
    assert_eq!(heading(&c).await, "Sign in", "signed out for good");
    c.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn console_browser_cancels_a_scheduled_retry() {
    let Some(c) = browser().await else { return };
    let app = TestApp::spawn_with(&[], &[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1h")]).await;
    let p = app.create_payment("pm_test_flaky", 800).await;
    let id = p["id"].as_str().unwrap();
    app.wait_payment(id, "a retry scheduled", |p| p["next_attempt_at"].is_string()).await;
    let (_, list) = app.get(&format!("/v1/attempts?status=scheduled&payment_id={id}")).await;
    let attempt = list["data"][0]["id"].as_str().expect("a scheduled attempt").to_owned();
    let ops = payd::testing::add_key(&app.pool, None, KeyKind::Ops, false).await.unwrap();
    assert_eq!(sign_in(&c, &app, &ops).await, "Attempts");
    let row = find(&c, &format!("tr[data-attempt='{attempt}']")).await;
    screenshot(&c, "operator-attempts").await;
    row.find(Locator::Css("a.cancel-one")).await.unwrap().click().await.unwrap();
    eventually("the confirmation page", WAIT, || async { (heading(&c).await == "Cancel attempts").then_some(()) })
        .await;
    find(&c, "#reason").await.send_keys("ops ticket 17").await.unwrap();
    find(&c, "#confirm").await.click().await.unwrap();
    confirm_dialog(&c).await;
    let flash = text_of(&c, "#flash").await;
    assert!(flash.contains("Canceled 1 of 1"), "{flash}");
    // The API agrees: the attempt never runs, the payment failed as a canceled retry.
    let failed = app.wait_status(id, "failed").await;
    assert_eq!(failed["error_code"], "retry_canceled");
    let (_, after) = app.get(&format!("/v1/attempts?payment_id={id}")).await;
    let canceled = after["data"].as_array().unwrap().iter().find(|a| a["id"] == attempt.as_str()).unwrap();
    assert_eq!(canceled["status"], "canceled");
    c.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn console_browser_shows_a_timeline_and_recovers_an_endpoint() {
    let Some(c) = browser().await else { return };
    let app = TestApp::spawn_with(&[], &[("PAYD_WEBHOOKS__RETRY_SCHEDULE", "100ms")]).await;
    let receiver = Receiver::start().await;
    receiver.always(500);
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let (status, p) = app
        .post(
            "/v1/payments",
            json!({"amount": 12345, "currency": "EUR", "payment_method_id": "pm_test_success",
                                     "description": "Order #1042", "metadata": {"order": "1042"}}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    let deliveries = format!("/v1/webhook_endpoints/{endpoint}/deliveries?status=failed");
    eventually("a failed delivery", Duration::from_secs(30), || async {
        let (_, list) = app.get(&deliveries).await;
        (list["total_count"].as_i64() >= Some(1)).then_some(())
    })
    .await;
    assert_eq!(sign_in(&c, &app, &app.key).await, "Payments", "a merchant lands on its payments");
    c.goto(&format!("{}/console/payments/{id}", app.base)).await.unwrap();
    assert!(text_of(&c, "#timeline").await.contains("payment.succeeded"));
    assert!(text_of(&c, "#payment").await.contains("123.45 EUR"));
    screenshot(&c, "merchant-payment-timeline").await;
    c.goto(&format!("{}/console/endpoints/{endpoint}", app.base)).await.unwrap();
    find(&c, "#health").await;
    screenshot(&c, "endpoint-health").await;
    receiver.always(200);
    find(&c, "#recover button").await.click().await.unwrap();
    find(&c, "#confirm").await.click().await.unwrap();
    confirm_dialog(&c).await;
    let recovery = text_of(&c, "#recovery").await;
    // The API shows the recovery, and the failed deliveries arrive.
    let (status, r) = app.get(&format!("/v1/recoveries/{recovery}")).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["deliveries"].as_i64() >= Some(1), "{r}");
    eventually("the recovered deliveries succeed", WAIT, || async {
        let (_, list) = app.get(&deliveries).await;
        (list["total_count"] == 0).then_some(())
    })
    .await;
    c.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn console_browser_keeps_merchants_apart() {
    let Some(c) = browser().await else { return };
    let app = TestApp::spawn().await;
    let p = app.create_payment("pm_test_success", 500).await;
    let id = p["id"].as_str().unwrap();
    let (_, other_key) = app.other_merchant().await;
    assert_eq!(sign_in(&c, &app, &other_key).await, "Payments");
    assert!(!text_of(&c, "#payments").await.contains(id), "not in another merchant's list");
    c.goto(&format!("{}/console/payments/{id}", app.base)).await.unwrap();
    assert_eq!(heading(&c).await, "Error 404");
    c.goto(&format!("{}/console/payments?query={id}", app.base)).await.unwrap();
    assert!(!text_of(&c, "#payments").await.contains(id), "nor found by search");
    c.goto(&format!("{}/console/holds", app.base)).await.unwrap();
    assert_eq!(heading(&c).await, "Error 403", "operator pages are for operators");
    c.close().await.unwrap();
    app.stop().await;
}
