//! localstripe, a third party's fake but stateful Stripe API (PyPI), as the
//! Stripe that payd's Stripe tests charge: one instance per test on a free
//! port, installed by `scripts/test` (scripts/lib/localstripe.sh).
//!
//! What it does not imitate is in the README ("Use with Stripe"): it keeps
//! one store for every key, ignores `Idempotency-Key`, has only
//! `card_declined` declines, sends no refund or dispute events. Events it
//! does not send are built and signed here, as Stripe would send them.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::common::{ChildGuard, eventually};

/// The key the tests talk to localstripe with (it accepts any `sk_` key).
pub const KEY: &str = "sk_test_payd_tests";

/// A running localstripe.
pub struct LocalStripe {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    http: reqwest::Client,
    _child: ChildGuard,
}

fn executable() -> String {
    let path = std::env::var("PAYD_LOCALSTRIPE")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/localstripe-venv/bin/localstripe").into());
    assert!(
        std::path::Path::new(&path).exists(),
        "localstripe is not installed at {path}: run scripts/test, or `. scripts/lib/services.sh; . scripts/lib/localstripe.sh; ensure_localstripe`"
    );
    path
}

impl LocalStripe {
    /// Starts an empty instance and waits until it answers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = ChildGuard(
            std::process::Command::new(executable())
                .args(["--port", &port.to_string(), "--from-scratch"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("localstripe starts"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // A route that needs no key and changes nothing.
        eventually("localstripe answers", Duration::from_secs(20), || async {
            let r = http.get(format!("{url}/js.stripe.com/v3/")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Self { url, http, _child: child }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(KEY).send().await.expect("localstripe answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST` a form.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send(form_post(&self.http, format!("{}{path}", self.url), form)).await
    }

    /// `GET` an object.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(self.http.get(format!("{}{path}", self.url))).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A Stripe PaymentMethod for a test card number; answers its `pm_…` id.
    pub async fn card(&self, number: &str) -> String {
        let form = [
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ];
        let (status, pm) = self.post("/v1/payment_methods", &form).await;
        assert_eq!(status, 200, "{pm}");
        pm["id"].as_str().unwrap().to_owned()
    }

    /// Points localstripe's webhooks (named `name`) at `url`, signed with `secret`.
    pub async fn webhook(&self, name: &str, url: &str, secret: &str) {
        let resp =
            form_post(&self.http, format!("{}/_config/webhooks/{name}", self.url), &[("url", url), ("secret", secret)])
                .send()
                .await
                .unwrap();
        assert!(resp.status().is_success(), "webhook registration: {}", resp.status());
    }

    /// The customer passes (or fails) 3-D Secure for a PaymentIntent.
    pub async fn authenticate(&self, intent: &str, success: bool) -> (u16, Value) {
        let pi = self.get(&format!("/v1/payment_intents/{intent}")).await;
        let secret = pi["client_secret"].as_str().unwrap().to_owned();
        let success = if success { "true" } else { "false" };
        self.post(
            &format!("/v1/payment_intents/{intent}/_authenticate"),
            &[("client_secret", &secret), ("success", success)],
        )
        .await
    }
}

fn form_post(http: &reqwest::Client, url: String, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    http.post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
}

/// A `Stripe-Signature` header as Stripe computes it.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}
