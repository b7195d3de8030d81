//! `payd loadtest`: measures payd end to end on this machine.
//!
//! It starts `payd serve` (this binary, all roles, development mode) on a
//! fresh database and AMQP prefix, runs a local webhook receiver that checks
//! every signature, registers it, creates N payments over HTTP at a given
//! concurrency (optionally paced to a rate), and waits for every verified
//! `payment.succeeded`. It prints intake throughput and latency (request →
//! 201), end-to-end throughput and latency (201 → verified webhook), and the
//! payd process's peak RSS. The database and queues are dropped afterwards.
//!
//! With `--provider-latency`, the payments are charged through a local
//! gateway stub ([`stub`]) that answers after that delay, instead of the
//! in-process sandbox: the figures then show what a real provider's latency
//! costs end to end.

mod stub;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::{Notify, Semaphore};

use crate::config::Settings;
use crate::db::keys::DEV_SECRET_KEY;

/// What to run.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadtestArgs {
    /// Payments to create.
    #[arg(long, default_value_t = 2000)]
    pub payments: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Pace creations to this many per second (default: as fast as the concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Log filter of the payd process under test.
    #[arg(long, default_value = "warn")]
    pub log_filter: String,
    /// Give up waiting for webhooks after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Run only the api role (with its relay) and measure intake alone.
    #[arg(long)]
    pub intake_only: bool,
    /// Payments created first, at the same concurrency and rate, and left
    /// out of the figures: the first second of a fresh payd opens its
    /// connections and prepares its statements.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Send every create with its own `Idempotency-Key`, as Stripe-style
    /// clients and queue producers (the message id) do.
    #[arg(long)]
    pub keyed: bool,
    /// Charge through a local gateway stub that answers after this delay
    /// (e.g. `300ms`), as real providers do, instead of the sandbox.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub provider_latency: Option<Duration>,
}

/// Webhooks received, by payment id: when the verified `payment.succeeded` arrived.
#[derive(Default)]
struct Received {
    secret: Mutex<String>,
    succeeded: Mutex<HashMap<String, Instant>>,
    bad_signatures: Mutex<u64>,
    arrived: Notify,
}

async fn receive(State(r): State<Arc<Received>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = r.secret.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if crate::webhooks::verify(&secret, &headers, &body, Duration::from_secs(300)).is_err() {
        *r.bad_signatures.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        return StatusCode::BAD_REQUEST;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    if event["type"] == "payment.succeeded"
        && let Some(id) = event["data"]["object"]["id"].as_str()
    {
        r.succeeded.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_owned()).or_insert_with(Instant::now);
        r.arrived.notify_one();
    }
    StatusCode::OK
}

/// The payd under test, killed when dropped.
struct Payd {
    child: std::process::Child,
    base: String,
}

impl Drop for Payd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Payd {
    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `p` quantile of sorted samples, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(label: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{label:<22} p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        pct(&samples, 0.5),
        pct(&samples, 0.9),
        pct(&samples, 0.99),
        pct(&samples, 1.0)
    )
}

/// Runs the load test and prints its report.
pub async fn run(settings: &Settings, args: LoadtestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.payments > 0 && args.concurrency > 0, "--payments and --concurrency must be positive");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut db_url = url::Url::parse(&settings.database.url).context("database.url")?;
    db_url.set_path(&format!("/payd_loadtest_{tag}"));
    let prefix = format!("payd_loadtest_{tag}.");
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");

    // The receiver.
    let received = Arc::new(Received::default());
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("serve");
    if args.intake_only {
        cmd.args(["--role", "api"]);
    }
    let stub = match args.provider_latency {
        Some(latency) => {
            let (stub, stub_url) = stub::start(latency).await?;
            let var = |key: &str| format!("PAYD_PROVIDERS__{}__{key}", stub::NAME.to_uppercase());
            cmd.env(var("BASE_URL"), stub_url).env(var("SECRET"), stub::SECRET);
            Some(stub)
        }
        None => None,
    };
    let child = cmd
        .env("PAYD_ENV", "development")
        .env("PAYD_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("PAYD_DATABASE__URL", db_url.as_str())
        .env("PAYD_AMQP__PREFIX", &prefix)
        .env("PAYD_RATE_LIMIT__PER_MINUTE", "0")
        .env("RUST_LOG", &args.log_filter)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting payd serve")?;
    let payd = Payd { child, base };
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let outcome = drive(&payd, &http, &hook_url, &received, &args, stub.is_some()).await;
    let rss = payd.peak_rss_kib();
    drop(payd);
    cleanup(settings, &db_url, &prefix).await;
    let report = outcome?;
    println!("{report}");
    if let (Some(stub), Some(latency)) = (stub, args.provider_latency) {
        let (calls, peak) = stub.figures();
        println!("{:<22} {calls} calls answered after {latency:?}, at most {peak} in flight", "provider stub");
    }
    println!("{:<22} {:.1} MiB", "payd peak RSS", rss as f64 / 1024.0);
    Ok(())
}

async fn drive(
    payd: &Payd,
    http: &reqwest::Client,
    hook_url: &str,
    received: &Arc<Received>,
    args: &LoadtestArgs,
    through_stub: bool,
) -> anyhow::Result<String> {
    // Ready?
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{}/health/ready", payd.base)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("payd did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoint: Value = http
        .post(format!("{}/v1/webhook_endpoints", payd.base))
        .bearer_auth(DEV_SECRET_KEY)
        .json(&json!({"url": hook_url, "enabled_events": ["payment.succeeded"]}))
        .send()
        .await?
        .json()
        .await?;
    let secret = endpoint["secret"].as_str().context("endpoint without a secret")?;
    *received.secret.lock().unwrap_or_else(|e| e.into_inner()) = secret.to_owned();
    let method = if through_stub {
        let stored: Value = http
            .post(format!("{}/v1/payment_methods", payd.base))
            .bearer_auth(DEV_SECRET_KEY)
            .json(&json!({"provider": stub::NAME, "token": "tok_loadtest"}))
            .send()
            .await?
            .json()
            .await?;
        stored["id"].as_str().with_context(|| format!("storing the stub's payment method: {stored}"))?.to_owned()
    } else {
        "pm_test_success".to_owned()
    };

    // Warm-up, then the measured run.
    if args.warmup > 0 {
        let warm = create(payd, http, args, &method, args.warmup).await?;
        if !args.intake_only {
            await_webhooks(received, &warm.accepted, args.timeout).await;
        }
    }
    let Run { accepted, errors, started, elapsed: intake_elapsed } =
        create(payd, http, args, &method, args.payments).await?;
    let wait = if args.intake_only { 0 } else { args.timeout };
    let webhooks = await_webhooks(received, &accepted, wait).await;
    let mut e2e = Vec::with_capacity(accepted.len());
    let mut last = started;
    for (id, answered, _) in &accepted {
        if let Some(at) = webhooks.get(id) {
            e2e.push(at.saturating_duration_since(*answered));
            last = last.max(*at);
        }
    }
    let intake: Vec<Duration> = accepted.iter().map(|(_, _, d)| *d).collect();
    let n = accepted.len() as f64;
    let mut out = vec![
        format!(
            "payments {} at concurrency {}{}{}{} (after {} warm-up payments)",
            args.payments,
            args.concurrency,
            args.rate.map(|r| format!(", paced to {r}/s")).unwrap_or_default(),
            if args.keyed { ", each with an Idempotency-Key" } else { "" },
            args.provider_latency.map(|l| format!(", provider answering after {l:?}")).unwrap_or_default(),
            args.warmup
        ),
        format!("{:<22} {} accepted, {} errors", "intake", accepted.len(), errors),
        format!("{:<22} {:.0} payments/s", "intake throughput", n / intake_elapsed.as_secs_f64()),
        summary("intake latency", intake),
    ];
    if args.intake_only {
        // No worker or dispatcher ran: there are no webhooks to wait for.
        return Ok(out.join("\n"));
    }
    out.extend([
        format!(
            "{:<22} {} of {} verified payment.succeeded ({} bad signatures)",
            "webhooks",
            e2e.len(),
            accepted.len(),
            received.bad_signatures.lock().unwrap_or_else(|e| e.into_inner())
        ),
        format!("{:<22} {:.0} payments/s", "end-to-end throughput", e2e.len() as f64 / (last - started).as_secs_f64()),
        summary("end-to-end latency", e2e.clone()),
    ]);
    if e2e.len() < accepted.len() {
        out.push(format!("INCOMPLETE: {} webhooks missing after {} s", accepted.len() - e2e.len(), args.timeout));
    }
    Ok(out.join("\n"))
}

/// The payments one round created.
struct Run {
    /// (payment id, when the 201 arrived, request → 201).
    accepted: Vec<(String, Instant, Duration)>,
    errors: u64,
    started: Instant,
    elapsed: Duration,
}

/// Creates `n` payments at the arguments' concurrency and rate.
async fn create(
    payd: &Payd,
    http: &reqwest::Client,
    args: &LoadtestArgs,
    method: &str,
    n: usize,
) -> anyhow::Result<Run> {
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let accepted: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    let errors = Arc::new(Mutex::new(0u64));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if let Some(rate) = args.rate {
            tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        }
        let permit = slots.clone().acquire_owned().await?;
        let (http, url, accepted, errors) =
            (http.clone(), format!("{}/v1/payments", payd.base), accepted.clone(), errors.clone());
        let (keyed, method) = (args.keyed, method.to_owned());
        tasks.spawn(async move {
            let sent = Instant::now();
            let mut request = http
                .post(url)
                .bearer_auth(DEV_SECRET_KEY)
                .json(&json!({"amount": 1000 + i, "currency": "USD", "payment_method_id": method}));
            if keyed {
                request = request.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
            }
            let resp = request.send().await;
            let answered = Instant::now();
            drop(permit);
            match resp {
                Ok(r) if r.status() == StatusCode::CREATED => {
                    let body: Value = r.json().await.unwrap_or_default();
                    if let Some(id) = body["id"].as_str() {
                        accepted.lock().unwrap_or_else(|e| e.into_inner()).push((
                            id.to_owned(),
                            answered,
                            answered - sent,
                        ));
                    }
                }
                _ => *errors.lock().unwrap_or_else(|e| e.into_inner()) += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let accepted = std::mem::take(&mut *accepted.lock().unwrap_or_else(|e| e.into_inner()));
    let errors = *errors.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Run { accepted, errors, started, elapsed })
}

/// Waits up to `timeout_s` for the verified webhooks of `accepted`; answers
/// when each arrived (of those that did).
async fn await_webhooks(
    received: &Received,
    accepted: &[(String, Instant, Duration)],
    timeout_s: u64,
) -> HashMap<String, Instant> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    loop {
        let arrived: HashMap<String, Instant> = {
            let all = received.succeeded.lock().unwrap_or_else(|e| e.into_inner());
            accepted.iter().filter_map(|(id, _, _)| all.get(id).map(|at| (id.clone(), *at))).collect()
        };
        if arrived.len() >= accepted.len() || Instant::now() > deadline {
            return arrived;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), received.arrived.notified()).await;
    }
}

/// Drops the test's database and queues (best effort).
async fn cleanup(settings: &Settings, db_url: &url::Url, prefix: &str) {
    let mut admin = db_url.clone();
    admin.set_path("/postgres");
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin.as_str()).await {
        let name = db_url.path().trim_start_matches('/');
        let _ = crate::db::drop_database(&mut conn, name).await;
    }
    let amqp =
        crate::queue::Amqp::new(&crate::config::AmqpSettings { prefix: prefix.to_owned(), ..settings.amqp.clone() });
    amqp.delete_topology().await;
}
