//! The console over plain HTTP (no browser): the session cookie's flags,
//! the hash-only session table, CSRF refusals, expiry, rate-limited
//! sign-ins, bounded forms, security headers and escaping.

use payd::testing::KeyKind;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common::TestApp;

const FORM: &str = "application/x-www-form-urlencoded";

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Signs in with `key`; answers the status and the `Set-Cookie` header.
pub async fn sign_in_raw(app: &TestApp, key: &str) -> (u16, Option<String>, String) {
    let resp = client()
        .post(format!("{}/console/sign_in", app.base))
        .header("content-type", FORM)
        .body(serde_urlencoded::to_string([("key", key)]).unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    (status, cookie, resp.text().await.unwrap())
}

/// A signed-in console user over HTTP.
pub struct Console {
    base: String,
    /// `payd_console=<token>`
    pub cookie: String,
}

impl Console {
    pub async fn sign_in(app: &TestApp, key: &str) -> Self {
        let (status, cookie, body) = sign_in_raw(app, key).await;
        assert_eq!(status, 303, "{body}");
        let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
        Self { base: app.base.clone(), cookie }
    }

    pub fn token(&self) -> &str {
        self.cookie.strip_prefix("payd_console=").unwrap()
    }

    /// `GET` a console page: (status, Location, body).
    pub async fn get(&self, path: &str) -> (u16, String, String) {
        let resp = client().get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, location, resp.text().await.unwrap())
    }

    /// `POST` a form with extra headers: (status, body).
    pub async fn post(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = client()
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", FORM)
            .body(serde_urlencoded::to_string(form).unwrap());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// The CSRF token the forms of `path` carry.
    pub async fn csrf(&self, path: &str) -> String {
        let (status, _, body) = self.get(path).await;
        assert_eq!(status, 200, "{body}");
        let at = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
        body[at..at + 64].to_owned()
    }
}

#[tokio::test]
async fn console_sign_in_sets_a_strict_http_only_cookie_and_stores_only_a_hash() {
    let app = TestApp::spawn().await;
    let (status, cookie, _) = sign_in_raw(&app, &app.key).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800", "Secure"] {
        assert!(cookie.split("; ").any(|f| f == flag), "{flag} missing in {cookie}");
    }
    let token = cookie.split(';').next().unwrap().strip_prefix("payd_console=").unwrap().to_owned();
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM console_sessions").fetch_all(&app.pool).await.unwrap();
    assert_eq!(stored, vec![Sha256::digest(token.as_bytes()).to_vec()], "only the token's hash is stored");
    // Security headers on every console page, signed in or not.
    let resp = client().get(format!("{}/console/sign_in", app.base)).send().await.unwrap();
    let h = resp.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'sha256-"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    // Wrong, publishable and malformed keys are refused as the API refuses them.
    let publishable =
        payd::testing::add_key(&app.pool, Some(&app.merchant), KeyKind::Publishable, false).await.unwrap();
    for (key, want) in [("sk_test_nope", 401), (publishable.as_str(), 403), ("", 401)] {
        let (status, cookie, body) = sign_in_raw(&app, key).await;
        assert_eq!((status, cookie), (want, None), "{key}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn console_posts_without_the_sessions_csrf_token_are_refused() {
    let app = TestApp::spawn().await;
    let c = Console::sign_in(&app, &app.key).await;
    let other = Console::sign_in(&app, &app.key).await;
    let csrf = c.csrf("/console/payments").await;
    let foreign = other.csrf("/console/payments").await;
    assert_ne!(csrf, foreign, "each session has its own token");
    let zeros = "0".repeat(64);
    for form in [vec![], vec![("csrf", zeros.as_str())], vec![("csrf", foreign.as_str())]] {
        let (status, body) = c.post("/console/sign_out", &form, &[]).await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = c
            .post("/console/attempts/cancel", &[&form[..], &[("attempt", "att_x"), ("reason", "r")]].concat(), &[])
            .await;
        assert_eq!(status, 403);
    }
    // A browser that says the form comes from another site is refused too.
    let (status, _) = c.post("/console/sign_out", &[("csrf", &csrf)], &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(status, 403);
    assert_eq!(c.get("/console/payments").await.0, 200, "the refusals changed nothing");
    // Forms are bounded.
    let big = "x".repeat(20_000);
    let (status, _) = c.post("/console/attempts/cancel", &[("csrf", &csrf), ("reason", &big)], &[]).await;
    assert_eq!(status, 413);
    // The right token signs out: the session is gone.
    let (status, _) = c.post("/console/sign_out", &[("csrf", &csrf)], &[]).await;
    assert_eq!(status, 303);
    let (status, location, _) = c.get("/console/payments").await;
    assert_eq!((status, location.as_str()), (303, "/console/sign_in"));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM console_sessions").fetch_one(&app.pool).await.unwrap();
    assert_eq!(left, 1, "the other session lives on");
    app.stop().await;
}

#[tokio::test]
async fn console_sessions_expire_and_end_with_their_key() {
    let app = TestApp::spawn().await;
    let c = Console::sign_in(&app, &app.key).await;
    assert_eq!(c.get("/console/payments").await.0, 200);
    let hash = Sha256::digest(c.token().as_bytes()).to_vec();
    sqlx::query("UPDATE console_sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1")
        .bind(&hash)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, location, _) = c.get("/console/payments").await;
    assert_eq!((status, location.as_str()), (303, "/console/sign_in"), "an expired session signs in again");
    // A revoked key's sessions end at once.
    let ops = payd::testing::add_key(&app.pool, None, KeyKind::Ops, false).await.unwrap();
    let o = Console::sign_in(&app, &ops).await;
    assert_eq!(o.get("/console/attempts").await.0, 200);
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE kind = 'ops'").execute(&app.pool).await.unwrap();
    assert_eq!(o.get("/console/attempts").await.0, 303);
    app.stop().await;
}

#[tokio::test]
async fn console_sign_ins_are_rate_limited_per_address() {
    let app = TestApp::spawn_with(&[], &[("PAYD_RATE_LIMIT__PER_MINUTE", "60"), ("PAYD_RATE_LIMIT__BURST", "3")]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(sign_in_raw(&app, "sk_test_guess").await.0);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses.iter().take(3).all(|s| *s == 401), "{statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn console_pages_escape_hostile_payment_data() {
    let app = TestApp::spawn().await;
    let hostile = "<script>alert(\"pwned\")</script>";
    let (status, p) = app
        .post(
            "/v1/payments",
            json!({"amount": 1234, "currency": "USD", "payment_method_id": "pm_test_success", "description": hostile,
                   "reference": "<b>ref</b>", "metadata": {"note": "<img src=x onerror=alert(1)>"}}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap();
    let c = Console::sign_in(&app, &app.key).await;
    for path in [
        format!("/console/payments/{id}"),
        "/console/payments".to_owned(),
        "/console/payments?query=%3Cscript".to_owned(),
    ] {
        let (status, _, body) = c.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for raw in ["<script>alert", "<img src=x", "<b>ref"] {
            assert!(!body.contains(raw), "{path} shows {raw} unescaped");
        }
        assert!(body.contains("&lt;script&gt;alert"), "{path} shows the description escaped");
    }
    let (_, _, timeline) = c.get(&format!("/console/payments/{id}")).await;
    assert!(timeline.contains("12.34 USD"), "amounts in the currency's units");
    assert!(timeline.contains("&lt;img src=x onerror=alert(1)&gt;"), "metadata escaped");
    app.stop().await;
}

#[tokio::test]
async fn console_retries_a_delivery_test_sends_and_shows_endpoints_to_operators() {
    let app = TestApp::spawn().await;
    let receiver = crate::common::Receiver::start().await;
    let (endpoint, _) = app.add_endpoint(&receiver.url).await;
    let p = app.create_payment("pm_test_success", 700).await;
    let id = p["id"].as_str().unwrap();
    app.wait_status(id, "succeeded").await;
    receiver.wait_for("payment.succeeded", id).await;
    let (_, list) = app.get(&format!("/v1/webhook_endpoints/{endpoint}/deliveries")).await;
    let delivery = list["data"][0]["id"].as_str().unwrap().to_owned();
    let c = Console::sign_in(&app, &app.key).await;
    let csrf = c.csrf(&format!("/console/endpoints/{endpoint}")).await;
    let before = receiver.all().len();
    let (status, body) = c.post(&format!("/console/deliveries/{delivery}/retry"), &[("csrf", &csrf)], &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("will be sent again"), "{body}");
    crate::common::eventually("the retried delivery arrives", crate::common::WAIT, || async {
        (receiver.all().len() > before).then_some(())
    })
    .await;
    let (status, body) = c
        .post(&format!("/console/endpoints/{endpoint}/test"), &[("csrf", &csrf), ("type", "payment.failed")], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Delivered: HTTP 200"), "{body}");
    let (status, _, body) = c.get(&format!("/console/deliveries/{delivery}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("delivery-attempts"), "{body}");
    // Another merchant finds none of it; an operator sees the endpoint's health, read-only.
    let (_, other_key) = app.other_merchant().await;
    let other = Console::sign_in(&app, &other_key).await;
    assert_eq!(other.get(&format!("/console/endpoints/{endpoint}")).await.0, 404);
    assert_eq!(other.get(&format!("/console/deliveries/{delivery}")).await.0, 404);
    let ops = payd::testing::add_key(&app.pool, None, KeyKind::Ops, false).await.unwrap();
    let o = Console::sign_in(&app, &ops).await;
    let (status, _, body) = o.get("/console/endpoints").await;
    assert_eq!(status, 200);
    assert!(body.contains(&endpoint) && body.contains("healthy"), "{body}");
    assert_eq!(o.get(&format!("/console/endpoints/{endpoint}")).await.0, 403, "merchant pages need a merchant key");
    // An operator reads any payment's timeline (transactions and attempts), not its merchant's events.
    let (status, _, body) = o.get(&format!("/console/payments/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("t-transaction") && !body.contains("t-event"), "{body}");
    app.stop().await;
}
