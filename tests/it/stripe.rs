//! The `stripe` provider end to end, through payd's API, against
//! localstripe: accounts, purchase, refunds, authorization, capture, void,
//! decline, 3-D Secure with Stripe's webhook, forged and foreign events,
//! disputes, and an unknown outcome settled by retrieving the PaymentIntent.
//! Each test checks what localstripe itself holds afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Receiver, TestApp, eventually};
use crate::localstripe::{LocalStripe, stripe_signature};

const SUCCESS: &str = "4242424242424242";
const DECLINE: &str = "4000000000000341";
const THREE_D_SECURE: &str = "4000002760003184";

/// A payd whose Stripe is `base_url`.
async fn app_with(base_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("PAYD_PROVIDERS__STRIPE__BASE_URL", base_url), ("PAYD_PROVIDERS__STRIPE__TIMEOUT", "5s")];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&[], &vars).await
}

/// A merchant's Stripe account on payd, with localstripe's webhooks pointed
/// at it; answers (provider account id, webhook secret).
async fn connect(app: &TestApp, key: &str, ls: &LocalStripe, name: &str) -> (String, String) {
    let secret = format!("whsec_{name}_secret");
    let body =
        json!({"provider": "stripe", "credentials": {"secret_key": "sk_test_merchant_key", "webhook_secret": secret}});
    let (status, account) = app.call_as(key, "POST", "/v1/provider_accounts", Some(body), &[]).await;
    assert_eq!(status, 201, "{account}");
    let id = account["id"].as_str().unwrap().to_owned();
    ls.webhook(name, &format!("{}/v1/provider_notifications/stripe/{id}", app.base), &secret).await;
    (id, secret)
}

/// A payd payment method for a Stripe test card.
async fn method(app: &TestApp, key: &str, ls: &LocalStripe, card: &str) -> String {
    let token = ls.card(card).await;
    let (status, pm) =
        app.call_as(key, "POST", "/v1/payment_methods", Some(json!({"provider": "stripe", "token": token})), &[]).await;
    assert_eq!(status, 201, "{pm}");
    pm["id"].as_str().unwrap().to_owned()
}

async fn pay(app: &TestApp, pm: &str, amount: i64, capture: bool) -> Value {
    let body = json!({"amount": amount, "currency": "USD", "payment_method_id": pm, "capture": capture});
    let (status, p) = app.post("/v1/payments", body).await;
    assert_eq!(status, 201, "{p}");
    p
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

async fn charge_txn(app: &TestApp, payment: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT id, provider_code FROM transactions WHERE payment_id = $1 AND type IN ('purchase', 'authorize')",
    )
    .bind(payment)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn stripe_accounts_are_per_merchant_and_mode_and_keep_their_keys_to_themselves() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    let (other, other_key) = app.other_merchant().await;
    let _ = other;
    // No account yet: a Stripe method is refused, naming the fix.
    let (status, err) = app.post("/v1/payment_methods", json!({"provider": "stripe", "token": "pm_card_visa"})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("provider_not_configured")), "{err}");
    // A live key in test mode, or a malformed secret, is refused.
    for creds in [
        json!({"secret_key": "sk_live_abcdefghijk", "webhook_secret": "whsec_x"}),
        json!({"secret_key": "sk_test_abcdefghijk", "webhook_secret": "nope"}),
        json!({"secret_key": "sk_test_abcdefghijk"}),
    ] {
        let (status, err) =
            app.post("/v1/provider_accounts", json!({"provider": "stripe", "credentials": creds})).await;
        assert_eq!(status, 400, "{err}");
    }
    let (account, _) = connect(&app, &app.key, &ls, "a").await;
    let (status, shown) = app.get(&format!("/v1/provider_accounts/{account}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["object"], "provider_account");
    assert_eq!(shown["provider"], "stripe");
    assert_eq!(shown["livemode"], false);
    assert!(!shown.to_string().contains("sk_test") && !shown.to_string().contains("whsec"), "{shown}");
    // Sealed at rest.
    let stored: String = sqlx::query_scalar("SELECT credentials FROM provider_accounts WHERE id = $1")
        .bind(&account)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!stored.contains("sk_test") && !stored.contains("whsec"), "{stored}");
    // One per merchant, mode and provider.
    let body =
        json!({"provider": "stripe", "credentials": {"secret_key": "sk_test_second_key", "webhook_secret": "whsec_b"}});
    let (status, err) = app.post("/v1/provider_accounts", body).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("provider_account_exists")), "{err}");
    let (_, list) = app.get("/v1/provider_accounts").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    // Another merchant neither sees it nor can charge on it.
    let (status, _) = app.call_as(&other_key, "GET", &format!("/v1/provider_accounts/{account}"), None, &[]).await;
    assert_eq!(status, 404);
    let (status, err) = app
        .call_as(
            &other_key,
            "POST",
            "/v1/payment_methods",
            Some(json!({"provider": "stripe", "token": "pm_card_visa"})),
            &[],
        )
        .await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("provider_not_configured")), "{err}");
    let pm = method(&app, &app.key, &ls, SUCCESS).await;
    let body = json!({"amount": 100, "currency": "USD", "payment_method_id": pm});
    let (status, _) = app.call_as(&other_key, "POST", "/v1/payments", Some(body.clone()), &[]).await;
    assert_eq!(status, 404, "another merchant's payment method does not exist for it");
    // Deleted: the credentials are wiped and its methods cannot be charged.
    let (status, deleted) = app.call("DELETE", &format!("/v1/provider_accounts/{account}"), None).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(true)), "{deleted}");
    let wiped: Option<String> = sqlx::query_scalar("SELECT credentials FROM provider_accounts WHERE id = $1")
        .bind(&account)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(wiped, None);
    let (status, err) = app.post("/v1/payments", body).await;
    assert_eq!((status, err["error"]["code"].as_str()), (422, Some("provider_not_configured")), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn a_stripe_purchase_and_its_refunds_are_made_on_the_payment_intent() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    connect(&app, &app.key, &ls, "a").await;
    // A PaymentMethod attached to a Stripe Customer is charged with it.
    let (_, customer) = ls.post("/v1/customers", &[]).await;
    let customer = customer["id"].as_str().unwrap().to_owned();
    let token = ls.card(SUCCESS).await;
    let (status, attached) = ls.post(&format!("/v1/payment_methods/{token}/attach"), &[("customer", &customer)]).await;
    assert_eq!(status, 200, "{attached}");
    let (status, pm) =
        app.post("/v1/payment_methods", json!({"provider": "stripe", "token": token, "customer_id": customer})).await;
    assert_eq!(status, 201, "{pm}");
    let p = pay(&app, id(&pm), 1500, true).await;
    let paid = app.wait_status(id(&p), "succeeded").await;
    let intent = paid["provider_reference"].as_str().unwrap().to_owned();
    assert!(intent.starts_with("pi_"), "{paid}");
    let (txn, _) = charge_txn(&app, id(&p)).await;
    let pi = ls.get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(pi["status"], "succeeded", "{pi}");
    assert_eq!((pi["amount"].as_i64(), pi["currency"].as_str()), (Some(1500), Some("usd")));
    assert_eq!(pi["metadata"]["payd_transaction_id"], txn.as_str());
    assert_eq!(pi["metadata"]["payd_payment_id"], id(&p));
    assert_eq!(pi["customer"], customer.as_str());
    assert_eq!(pi["charges"]["total_count"], 1, "charged once: {pi}");

    let (status, refund) = app.post(&format!("/v1/payments/{}/refund", id(&p)), json!({"amount": 500})).await;
    assert_eq!(status, 200, "{refund}");
    let partly = app.wait_payment(id(&p), "500 refunded", |p| p["amount_refunded"] == 500).await;
    assert_eq!(partly["status"], "refunded");
    let (status, _) = app.post(&format!("/v1/payments/{}/refund", id(&p)), json!({})).await;
    assert_eq!(status, 200);
    app.wait_payment(id(&p), "all refunded", |p| p["amount_refunded"] == 1500).await;
    let refunds = ls.get(&format!("/v1/refunds?payment_intent={intent}")).await;
    let mut amounts: Vec<i64> =
        refunds["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [500, 1000], "{refunds}");
    for r in refunds["data"].as_array().unwrap() {
        let key = r["metadata"]["payd_transaction_id"].as_str().unwrap();
        let kind: String =
            sqlx::query_scalar("SELECT type FROM transactions WHERE id = $1 AND provider_reference = $2")
                .bind(key)
                .bind(r["id"].as_str().unwrap())
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(kind, "refund");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stripe_authorization_is_captured_once_and_a_void_cancels_the_intent() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    connect(&app, &app.key, &ls, "a").await;
    let pm = method(&app, &app.key, &ls, SUCCESS).await;
    let p = pay(&app, &pm, 1000, false).await;
    let authorized = app.wait_status(id(&p), "requires_capture").await;
    let intent = authorized["provider_reference"].as_str().unwrap().to_owned();
    assert_eq!(ls.get(&format!("/v1/payment_intents/{intent}")).await["status"], "requires_capture");
    let (status, body) = app.post(&format!("/v1/payments/{}/capture", id(&p)), json!({"amount": 600})).await;
    assert_eq!(status, 200, "{body}");
    let captured = app.wait_status(id(&p), "succeeded").await;
    // Stripe captures an authorization once and releases the rest.
    assert_eq!((captured["amount_captured"].as_i64(), captured["amount_capturable"].as_i64()), (Some(600), Some(0)));
    let pi = ls.get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["latest_charge"]["amount_refunded"], 400, "the uncaptured rest was released: {pi}");
    let (status, _) = app.post(&format!("/v1/payments/{}/capture", id(&p)), json!({})).await;
    assert_eq!(status, 400, "nothing is left to capture");

    let q = pay(&app, &pm, 700, false).await;
    let authorized = app.wait_status(id(&q), "requires_capture").await;
    let intent = authorized["provider_reference"].as_str().unwrap().to_owned();
    let (status, canceled) = app.post(&format!("/v1/payments/{}/cancel", id(&q)), json!({})).await;
    assert_eq!((status, canceled["status"].as_str()), (200, Some("canceled")), "{canceled}");
    eventually("the void reaches Stripe", Duration::from_secs(15), || async {
        (ls.get(&format!("/v1/payment_intents/{intent}")).await["status"] == "canceled").then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_stripe_decline_fails_the_payment_with_stripes_code_kept() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    connect(&app, &app.key, &ls, "a").await;
    let pm = method(&app, &app.key, &ls, DECLINE).await;
    let p = pay(&app, &pm, 900, true).await;
    let failed = app.wait_status(id(&p), "failed").await;
    assert_eq!(failed["error_code"], "card_declined", "{failed}");
    let (txn, provider_code) = charge_txn(&app, id(&p)).await;
    assert_eq!(provider_code.as_deref(), Some("card_declined"));
    let (_, txns) = app.get(&format!("/v1/payments/{}/transactions", id(&p))).await;
    assert_eq!(txns["data"][0]["provider_code"], "card_declined", "{txns}");
    let (_, attempts) = app.get(&format!("/v1/payments/{}/attempts", id(&p))).await;
    assert_eq!(attempts["data"].as_array().unwrap().len(), 1, "a decline is not retried: {attempts}");
    let intent: String = sqlx::query_scalar("SELECT provider_reference FROM transactions WHERE id = $1")
        .bind(&txn)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let pi = ls.get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(pi["status"], "requires_payment_method", "{pi}");
    assert_eq!(pi["last_payment_error"]["code"], "card_declined");
    app.stop().await;
}

#[tokio::test]
async fn three_d_secure_waits_for_the_customer_and_stripes_webhook_settles_it() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    let receiver = Receiver::start().await;
    app.add_endpoint(&receiver.url).await;
    let (account, secret) = connect(&app, &app.key, &ls, "a").await;
    let pm = method(&app, &app.key, &ls, THREE_D_SECURE).await;
    let body = json!({"amount": 2500, "currency": "USD", "payment_method_id": pm});
    let (status, p) = app.call_as(&app.key, "POST", "/v1/payments", Some(body), &[("Prefer", "wait=10")]).await;
    assert_eq!((status, p["status"].as_str()), (201, Some("requires_action")), "{p}");
    let intent = p["provider_reference"].as_str().unwrap().to_owned();
    let pi = ls.get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(pi["status"], "requires_action");
    assert_eq!(p["next_action"], json!({"type": "use_stripe_sdk", "client_secret": pi["client_secret"]}), "{p}");
    receiver.wait_for("payment.requires_action", id(&p)).await;

    // A forged event changes nothing.
    let forged = json!({"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": intent, "object": "payment_intent", "status": "succeeded"}}});
    let forged = forged.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let url = format!("{}/v1/provider_notifications/stripe/{account}", app.base);
    for signature in [stripe_signature("whsec_wrong", now, &forged), stripe_signature(&secret, now - 600, &forged)] {
        let resp = app.http.post(&url).header("Stripe-Signature", signature).body(forged.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "signature_invalid", "{err}");
    }
    let (_, still) = app.get(&format!("/v1/payments/{}", id(&p))).await;
    assert_eq!(still["status"], "requires_action");

    // The customer authenticates; Stripe's signed webhook settles the payment.
    let (status, authenticated) = ls.authenticate(&intent, true).await;
    assert_eq!(status, 200, "{authenticated}");
    let paid = app.wait_status(id(&p), "succeeded").await;
    assert!(paid.get("next_action").is_none(), "{paid}");
    receiver.wait_for("payment.succeeded", id(&p)).await;
    let applied =
        app.count("SELECT count(*) FROM provider_notifications WHERE provider LIKE 'stripe/' || $1", &account).await;
    assert_eq!(applied, 1, "localstripe's event was applied once");
    assert_eq!(ls.get(&format!("/v1/payment_intents/{intent}")).await["charges"]["total_count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn stripe_events_reach_only_the_accounts_own_payments_and_disputes_become_chargebacks() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    let (_, other_key) = app.other_merchant().await;
    // localstripe sends every event to every registered webhook: merchant
    // B's endpoint hears of A's PaymentIntents, and must not act on them.
    let (account_a, secret_a) = connect(&app, &app.key, &ls, "a").await;
    let (account_b, secret_b) = connect(&app, &other_key, &ls, "b").await;
    let pm = method(&app, &app.key, &ls, SUCCESS).await;
    let p = pay(&app, &pm, 3000, true).await;
    let paid = app.wait_status(id(&p), "succeeded").await;
    let intent = paid["provider_reference"].as_str().unwrap().to_owned();
    let event = |kind: &str, object: Value| {
        json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": kind,
            "data": {"object": object}})
        .to_string()
    };
    let send = |account: String, secret: String, body: String| {
        let app = &app;
        async move {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let resp = app
                .http
                .post(format!("{}/v1/provider_notifications/stripe/{account}", app.base))
                .header("Stripe-Signature", stripe_signature(&secret, now, &body))
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // A refund through payd, then Stripe's charge.refunded about it: applied once.
    let (status, _) = app.post(&format!("/v1/payments/{}/refund", id(&p)), json!({"amount": 500})).await;
    assert_eq!(status, 200);
    app.wait_payment(id(&p), "500 refunded", |p| p["amount_refunded"] == 500).await;
    let refunds = ls.get(&format!("/v1/refunds?payment_intent={intent}")).await;
    let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": intent, "amount_refunded": 500,
        "refunds": {"object": "list", "data": refunds["data"]}});
    let (status, answer) = send(account_a.clone(), secret_a.clone(), event("charge.refunded", charge)).await;
    assert_eq!(status, 200, "{answer}");
    let (_, once) = app.get(&format!("/v1/payments/{}", id(&p))).await;
    assert_eq!(once["amount_refunded"], 500, "{once}");
    // A dispute, sent to B's endpoint with B's secret: A's payment is not B's.
    let dispute =
        json!({"id": "dp_1", "object": "dispute", "amount": 1200, "payment_intent": intent, "reason": "fraudulent"});
    let (status, answer) = send(account_b.clone(), secret_b, event("charge.dispute.created", dispute.clone())).await;
    assert_eq!((status, answer["ignored"].as_bool()), (200, Some(true)), "{answer}");
    let (_, untouched) = app.get(&format!("/v1/payments/{}", id(&p))).await;
    assert_eq!(untouched["amount_refunded"], 500);
    // The same dispute on A's endpoint: one chargeback, however often Stripe sends it.
    let body = event("charge.dispute.created", dispute);
    for _ in 0..2 {
        let (status, answer) = send(account_a.clone(), secret_a.clone(), body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, txns) = app.get(&format!("/v1/payments/{}/transactions", id(&p))).await;
    let chargebacks: Vec<&Value> =
        txns["data"].as_array().unwrap().iter().filter(|t| t["type"] == "chargeback").collect();
    assert_eq!(chargebacks.len(), 1, "{txns}");
    assert_eq!(chargebacks[0]["amount"], 1200);
    let (_, disputed) = app.get(&format!("/v1/payments/{}", id(&p))).await;
    assert_eq!((disputed["status"].as_str(), disputed["amount_refunded"].as_i64()), (Some("refunded"), Some(1700)));
    // An event of a PaymentIntent payd never made is acknowledged and ignored.
    let stranger = json!({"id": "pi_not_payd", "object": "payment_intent", "status": "succeeded"});
    let (status, answer) = send(account_a, secret_a, event("payment_intent.succeeded", stranger)).await;
    assert_eq!((status, answer["ignored"].as_bool()), (200, Some(true)), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_payment_waiting_for_authentication_can_be_canceled_or_declined_by_the_issuer() {
    let ls = LocalStripe::start().await;
    let app = app_with(&ls.url, &[]).await;
    connect(&app, &app.key, &ls, "a").await;
    let pm = method(&app, &app.key, &ls, THREE_D_SECURE).await;
    let p = pay(&app, &pm, 1100, true).await;
    let waiting = app.wait_status(id(&p), "requires_action").await;
    let intent = waiting["provider_reference"].as_str().unwrap().to_owned();
    let (status, canceled) = app.post(&format!("/v1/payments/{}/cancel", id(&p)), json!({})).await;
    assert_eq!((status, canceled["status"].as_str()), (200, Some("canceled")), "{canceled}");
    eventually("the PaymentIntent is canceled at Stripe", Duration::from_secs(15), || async {
        (ls.get(&format!("/v1/payment_intents/{intent}")).await["status"] == "canceled").then_some(())
    })
    .await;
    eventually("the charge is canceled", Duration::from_secs(15), || async {
        let (_, txns) = app.get(&format!("/v1/payments/{}/transactions", id(&p))).await;
        let charge = txns["data"].as_array()?.iter().find(|t| t["type"] == "purchase")?.clone();
        (charge["status"] == "canceled").then_some(())
    })
    .await;
    let running = app.count("SELECT count(*) FROM attempts WHERE payment_id = $1 AND status = 'running'", id(&p)).await;
    assert_eq!(running, 0);

    // The issuer declines after authentication: Stripe's payment_failed settles it.
    let pm = method(&app, &app.key, &ls, "4000008260003178").await;
    let q = pay(&app, &pm, 1200, true).await;
    let waiting = app.wait_status(id(&q), "requires_action").await;
    let intent = waiting["provider_reference"].as_str().unwrap().to_owned();
    let (status, _) = ls.authenticate(&intent, true).await;
    assert_eq!(status, 402);
    let failed = app.wait_status(id(&q), "failed").await;
    assert_eq!(failed["error_code"], "card_declined", "{failed}");
    assert_eq!(charge_txn(&app, id(&q)).await.1.as_deref(), Some("card_declined"));
    app.stop().await;
}

/// Forwards everything to localstripe; the first confirm is carried out
/// there but answered only after payd has given up waiting.
async fn slow_confirm_proxy(upstream: String, confirms: Arc<AtomicUsize>) -> String {
    async fn forward(
        axum::extract::State((upstream, confirms)): axum::extract::State<(String, Arc<AtomicUsize>)>,
        req: axum::extract::Request,
    ) -> (axum::http::StatusCode, String) {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let mut out = reqwest::Client::new().request(parts.method.clone(), format!("{upstream}{path}")).body(body);
        for name in ["authorization", "content-type", "idempotency-key", "stripe-version"] {
            if let Some(v) = parts.headers.get(name) {
                out = out.header(name, v.to_str().unwrap());
            }
        }
        let resp = out.send().await.unwrap();
        let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        if path.ends_with("/confirm") && confirms.fetch_add(1, Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        (status, text)
    }
    let router = axum::Router::new().fallback(forward).with_state((upstream, confirms));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unknown_stripe_outcome_is_settled_by_retrieving_the_payment_intent() {
    let ls = LocalStripe::start().await;
    let confirms = Arc::new(AtomicUsize::new(0));
    let proxy = slow_confirm_proxy(ls.url.clone(), confirms.clone()).await;
    let app = app_with(
        &proxy,
        &[("PAYD_PROVIDERS__STRIPE__TIMEOUT", "1s"), ("PAYD_PAYMENTS__RETRY_SCHEDULE", "300ms,300ms,300ms")],
    )
    .await;
    connect(&app, &app.key, &ls, "a").await;
    let pm = method(&app, &app.key, &ls, SUCCESS).await;
    let p = pay(&app, &pm, 4200, true).await;
    let paid = app.wait_status(id(&p), "succeeded").await;
    let intent = paid["provider_reference"].as_str().unwrap().to_owned();
    // The confirm timed out (the money moved); the retry read the
    // PaymentIntent instead of charging again.
    assert_eq!(confirms.load(Ordering::SeqCst), 1, "confirmed once");
    let (_, attempts) = app.get(&format!("/v1/payments/{}/attempts", id(&p))).await;
    let attempts = attempts["data"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(attempts.iter().any(|a| a["error_code"] == "timeout"), "{attempts:?}");
    let pi = ls.get(&format!("/v1/payment_intents/{intent}")).await;
    assert_eq!(pi["charges"]["total_count"], 1, "one charge: {pi}");
    let intents = ls.get("/v1/payment_intents?limit=100").await;
    assert_eq!(intents["data"].as_array().unwrap().len(), 1, "one PaymentIntent: {intents}");
    app.stop().await;
}
