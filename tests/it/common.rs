//! The test harness: each test gets its own database and AMQP prefix and an
//! in-process payd on port 0, plus a webhook receiver and helpers that poll
//! for conditions with a deadline instead of sleeping.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use lapin::options::QueueDeleteOptions;
use payd::app::{self, Role, Running};
use payd::config::Settings;
use payd::testing::MerchantId;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::{Connection, PgConnection, PgPool};

/// How long `eventually` waits by default.
pub const WAIT: Duration = Duration::from_secs(15);

fn admin_url() -> String {
    std::env::var("PAYD_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".into())
}

fn amqp_url() -> String {
    std::env::var("PAYD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A running payd for one test.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
    /// A pool on the test's database, for assertions on rows.
    pub pool: PgPool,
    /// The test merchant's secret key.
    pub key: String,
    /// The test merchant.
    pub merchant: MerchantId,
    /// The settings variables: the same database and prefix for more processes.
    pub vars: HashMap<String, String>,
    pub running: Option<Running>,
    db_name: String,
}

/// Settings of a test, with `extra` variables on top.
pub fn settings(vars: &HashMap<String, String>) -> Settings {
    Settings::load(vars, std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))).expect("test settings")
}

impl TestApp {
    /// All roles.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[], &[]).await
    }

    /// The given roles (all when empty) with extra settings variables.
    pub async fn spawn_with(roles: &[Role], extra: &[(&str, &str)]) -> Self {
        payd::telemetry::init(payd::config::LogFormat::Text, "warn,payd=info");
        payd::install_crypto();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("payd_test_{id}");
        let mut admin = PgConnection::connect(&format!("{}/postgres", admin_url())).await.expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin).await.unwrap();
        admin.close().await.ok();
        let db_url = format!("{}/{db_name}", admin_url());
        let mut vars: HashMap<String, String> = [
            ("PAYD_ENV", "test"),
            ("PAYD_HTTP__LISTEN", "127.0.0.1:0"),
            ("PAYD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
            ("PAYD_WEBHOOKS__RETRY_SCHEDULE", "1s,1s,1s"),
            ("PAYD_WEBHOOKS__TIMEOUT", "3s"),
            ("PAYD_PAYMENTS__PROVIDER_TIMEOUT", "2s"),
            ("PAYD_DATABASE__MAX_CONNECTIONS", "10"),
            // Tests send bursts with one key; the rate-limit tests turn it on.
            ("PAYD_RATE_LIMIT__PER_MINUTE", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.insert("PAYD_DATABASE__URL".into(), db_url.clone());
        vars.insert("PAYD_AMQP__URL".into(), amqp_url());
        vars.insert("PAYD_AMQP__PREFIX".into(), format!("payd_test_{}.", &id[..12]));
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let running = app::start(settings(&vars), roles).await.expect("payd starts");
        let pool = PgPool::connect(&db_url).await.unwrap();
        let m = payd::testing::create_merchant(&pool, "Test merchant").await.unwrap();
        let base = running.addr.map(|a| format!("http://{a}")).unwrap_or_default();
        Self {
            base,
            http: reqwest::Client::new(),
            pool,
            key: m.secret_key,
            merchant: m.id,
            vars,
            running: Some(running),
            db_name,
        }
    }

    /// Starts more roles in this process on the same database and prefix.
    pub async fn start_more(&self, roles: &[Role]) -> Running {
        app::start(settings(&self.vars), roles).await.expect("more roles start")
    }

    /// Starts roles with extra settings variables on the same database and prefix.
    pub async fn start_more_with(&self, roles: &[Role], extra: &[(&str, &str)]) -> Running {
        let mut vars = self.vars.clone();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        app::start(settings(&vars), roles).await.expect("more roles start")
    }

    /// Creates another merchant; answers its id and secret key.
    pub async fn other_merchant(&self) -> (MerchantId, String) {
        let m = payd::testing::create_merchant(&self.pool, "Other merchant").await.unwrap();
        (m.id, m.secret_key)
    }

    /// A request with this merchant's key.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.key, method, path, body, &[]).await
    }

    /// A request with any key and extra headers.
    pub async fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// Creates a payment and asserts the 201.
    pub async fn create_payment(&self, method: &str, amount: i64) -> Value {
        let (status, body) =
            self.post("/v1/payments", json!({"amount": amount, "currency": "USD", "payment_method_id": method})).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "pending");
        body
    }

    /// Checks the invariant of amounts: the payment's `amount_captured`,
    /// `amount_refunded` and `amount_capturable` are the sums of its
    /// transactions as the API lists them. Answers the payment.
    pub async fn assert_amounts(&self, id: &str) -> Value {
        self.assert_amounts_as(&self.key, id).await
    }

    /// [`TestApp::assert_amounts`] with another key.
    pub async fn assert_amounts_as(&self, key: &str, id: &str) -> Value {
        // The payment and its transactions come from two requests: read the
        // transactions on both sides of the payment until they agree, so a
        // provider outcome landing in between cannot fake a mismatch.
        let txn_path = format!("/v1/payments/{id}/transactions?limit=100");
        let (p, list) = eventually(&format!("a stable read of {id}"), WAIT, || async {
            let (status, before) = self.call_as(key, "GET", &txn_path, None, &[]).await;
            assert_eq!(status, 200, "{before}");
            let (status, p) = self.call_as(key, "GET", &format!("/v1/payments/{id}"), None, &[]).await;
            assert_eq!(status, 200, "{p}");
            let (_, after) = self.call_as(key, "GET", &txn_path, None, &[]).await;
            (before == after).then_some((p, after))
        })
        .await;
        let txns = list["data"].as_array().unwrap();
        assert_eq!(list["total_count"].as_u64().unwrap() as usize, txns.len());
        let sum = |kinds: &[&str], statuses: &[&str]| -> i64 {
            txns.iter()
                .filter(|t| {
                    kinds.contains(&t["type"].as_str().unwrap()) && statuses.contains(&t["status"].as_str().unwrap())
                })
                .map(|t| t["amount"].as_i64().unwrap())
                .sum()
        };
        let ok = ["succeeded"];
        let captured = sum(&["purchase", "capture"], &ok);
        let refunded = sum(&["refund", "chargeback"], &ok) - sum(&["chargeback_reversal"], &ok);
        let open = match p["status"].as_str().unwrap() {
            "canceled" | "failed" => 0,
            _ => sum(&["authorize"], &ok) - sum(&["capture"], &["pending", "succeeded"]),
        };
        assert_eq!(p["amount_captured"].as_i64().unwrap(), captured, "amount_captured vs transactions: {p} {list}");
        assert_eq!(p["amount_refunded"].as_i64().unwrap(), refunded, "amount_refunded vs transactions: {p} {list}");
        assert_eq!(p["amount_capturable"].as_i64().unwrap(), open, "amount_capturable vs transactions: {p} {list}");
        assert!(refunded <= captured && captured <= p["amount"].as_i64().unwrap(), "{p}");
        p
    }

    /// Stores a payment method of `provider` with `token`; answers its id.
    pub async fn payment_method(&self, provider: &str, token: &str) -> String {
        let (status, body) = self.post("/v1/payment_methods", json!({"provider": provider, "token": token})).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Sends a raw body with a content type; answers status and JSON body.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the payment satisfies `done` (described by `what`); answers it.
    pub async fn wait_payment(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("payment {id}: {what}"), WAIT, || async {
            let (_, p) = self.get(&format!("/v1/payments/{id}")).await;
            done(&p).then_some(p)
        })
        .await
    }

    /// Waits until the payment has `status`; answers it.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_payment(id, status, |p| p["status"] == status).await
    }

    /// Registers an endpoint for every event; answers (id, secret).
    pub async fn add_endpoint(&self, url: &str) -> (String, String) {
        let (status, body) = self.post("/v1/webhook_endpoints", json!({"url": url, "enabled_events": ["*"]})).await;
        assert_eq!(status, 201, "{body}");
        (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
    }

    /// Counts rows of a query returning one bigint.
    pub async fn count(&self, sql: &'static str, bind: &str) -> i64 {
        sqlx::query_scalar(sql).bind(bind).fetch_one(&self.pool).await.unwrap()
    }

    /// Stops payd and removes the test's queues and database.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(30), r.stop()).await.expect("payd stops within 30 s");
        }
        tokio::time::timeout(Duration::from_secs(10), self.pool.close())
            .await
            .expect("the test returned every pooled connection before stop()");
        cleanup(&self.vars, &self.db_name).await;
    }
}

async fn cleanup(vars: &HashMap<String, String>, db_name: &str) {
    let prefix = &vars["PAYD_AMQP__PREFIX"];
    if let Ok(conn) = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await {
        if let Ok(ch) = conn.create_channel().await {
            for q in ["payd.attempts", "payd.attempts.dead", "payd.commands.intake", "payd.commands.dead"] {
                let _ = ch.queue_delete(format!("{prefix}{q}").as_str().into(), QueueDeleteOptions::default()).await;
            }
            let _ = ch
                .exchange_delete(
                    format!("{prefix}payd.commands").as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = conn.close(200, "bye".into()).await;
    }
    if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", admin_url())).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}

/// Polls `check` until it answers `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Headers and body a receiver adds to every answer.
type Answer = (Vec<(String, String)>, String);

/// A webhook receiver: records every request and answers with the
/// programmed statuses (one per request, then the last one forever).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
    default_status: Arc<AtomicU16>,
    /// Extra response headers and body, for every answer.
    extra: Arc<Mutex<Answer>>,
    delay_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    /// The most requests it ever had in flight at once.
    pub max_in_flight: Arc<AtomicU64>,
    /// Percent of requests answered 500 at random (after the programmed statuses).
    fail_percent: Arc<AtomicU16>,
}

impl Receiver {
    pub async fn start() -> Self {
        let r = Self {
            url: String::new(),
            received: Arc::default(),
            statuses: Arc::default(),
            default_status: Arc::new(AtomicU16::new(200)),
            extra: Arc::default(),
            delay_ms: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            fail_percent: Arc::default(),
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { url: format!("http://{addr}/hook"), ..r }
    }

    /// Answers this status once the programmed ones are used up.
    pub fn always(&self, status: u16) {
        self.default_status.store(status, Ordering::SeqCst);
    }

    /// Adds a header to every answer.
    pub fn header(&self, name: &str, value: &str) {
        self.extra.lock().unwrap().0.push((name.to_owned(), value.to_owned()));
    }

    /// Sets the body of every answer.
    pub fn body(&self, body: &str) {
        self.extra.lock().unwrap().1 = body.to_owned();
    }

    /// Fails this percentage of requests with 500, at random.
    pub fn fail_randomly(&self, percent: u16) {
        self.fail_percent.store(percent, Ordering::SeqCst);
    }

    /// Answers only after this long.
    pub fn delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers these statuses to the next requests, in order.
    pub fn answer(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend_from_slice(statuses);
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a request with `event_type` for `payment_id` arrived.
    pub async fn wait_for(&self, event_type: &str, payment_id: &str) -> Received {
        eventually(&format!("{event_type} webhook for {payment_id}"), WAIT, || async {
            self.all().into_iter().find(|r| {
                let v = r.json();
                v["type"] == event_type && v["data"]["object"]["id"] == payment_id
            })
        })
        .await
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.max_in_flight.fetch_max(now, Ordering::SeqCst);
    r.received.lock().unwrap().push(Received { headers, body });
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let next = {
        let mut s = r.statuses.lock().unwrap();
        if s.is_empty() { None } else { Some(s.remove(0)) }
    };
    let flaky = rand::random_range(0..100) < r.fail_percent.load(Ordering::SeqCst);
    let code = next.unwrap_or_else(|| if flaky { 500 } else { r.default_status.load(Ordering::SeqCst) });
    let (extra_headers, body) = r.extra.lock().unwrap().clone();
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut resp = (StatusCode::from_u16(code).unwrap(), body).into_response();
    for (k, v) in extra_headers {
        resp.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}

/// The Standard Webhooks check, written here from the spec independently of
/// payd's signing code: any `v1,` signature in the header must equal
/// base64(HMAC-SHA256(base64decode(secret minus "whsec_"), "id.ts.body")),
/// and the timestamp must be within 5 minutes.
pub fn verify_webhook(secret: &str, r: &Received) -> bool {
    r.header("webhook-signature").split(' ').any(|sig| verify_signature(secret, r, sig))
}

/// Checks one `v1,…` signature of a received webhook against `secret`,
/// independently of payd's code (see [`verify_webhook`]).
pub fn verify_signature(secret: &str, r: &Received, signature: &str) -> bool {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let id = r.header("webhook-id");
    let ts = r.header("webhook-timestamp");
    let Ok(ts_num) = ts.parse::<i64>() else { return false };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - ts_num).abs() > 300 {
        return false;
    }
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(&signed);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    signature.strip_prefix("v1,") == Some(expected.as_str())
}

/// The real `payd` binary with this test's settings (plus `extra`).
pub fn payd(app: &TestApp, args: &[&str], extra: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_payd"));
    cmd.args(args)
        .env_clear()
        .env("PAYD_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .env("RUST_LOG", "warn,payd=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in &app.vars {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a `payd` command that must succeed and print JSON on stdout.
pub fn run_json(app: &TestApp, args: &[&str]) -> Value {
    let out = payd(app, args, &[]).stdout(std::process::Stdio::piped()).output().unwrap();
    assert!(out.status.success(), "payd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Waits for a child process to exit; kills it and fails after `within`.
pub async fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child process did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process that is killed when the test ends, even by a panic, so a
/// failed test leaves no payd running.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a command under a [`ChildGuard`].
pub fn spawn(cmd: &mut std::process::Command) -> ChildGuard {
    ChildGuard(cmd.spawn().expect("the payd binary starts"))
}

/// Now, as RFC 3339 (a bound for time filters).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}
