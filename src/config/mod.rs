//! Settings: `config/default.toml`, then `config/<PAYD_ENV>.toml`, then
//! `PAYD_SECTION__KEY` environment variables (plus `DATABASE_URL` and
//! `AMQP_URL` as fallbacks). Loaded from an explicit map of variables so
//! tests never touch the process environment, and validated once at start
//! with messages that name the bad setting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::faults::CrashPoint;
pub use parse::parse_duration;
use parse::{crash_points, duration, duration_list};
pub use providers::ProviderSettings;
pub use retention::RetentionSettings;

mod parse;
mod providers;
mod retention;

/// The defaults, compiled in so the binary runs from any directory.
const DEFAULTS: &str = include_str!("../../config/default.toml");

/// A setting that could not be read or is out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be read or parsed.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error("invalid setting {key}: {reason}")]
    Invalid {
        /// The setting, e.g. `payments.retry_schedule`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// All of payd's settings.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// `PAYD_ENV`: `development`, `production` (the default), or any other name.
    #[serde(default = "default_env")]
    pub env: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `RUST_LOG`-style filter.
    pub log_filter: String,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// RabbitMQ.
    pub amqp: AmqpSettings,
    /// The HTTP API.
    pub http: HttpSettings,
    /// Provider calls and their retries.
    pub payments: PaymentSettings,
    /// Webhook delivery.
    pub webhooks: WebhookSettings,
    /// Per-key rate limits.
    pub rate_limit: RateLimitSettings,
    /// Payment providers by name (`sandbox` and HTTP gateways).
    #[serde(default)]
    pub providers: HashMap<String, ProviderSettings>,
    /// Fault injection for crash tests; empty in normal operation.
    #[serde(default)]
    pub faults: FaultSettings,
    /// Keys of secrets at rest.
    #[serde(default)]
    pub secrets: SecretsSettings,
    /// How long events and webhook attempts are kept.
    pub retention: RetentionSettings,
}

/// `[secrets]`
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// Base64 of 32 random bytes: encrypts webhook secrets at rest. Required
    /// in production; elsewhere a public development key stands in.
    #[serde(default)]
    pub master_key: String,
}

impl std::fmt::Debug for SecretsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsSettings").field("master_key", &"<redacted>").finish()
    }
}

impl Settings {
    /// The box that seals and opens secrets at rest: `secrets.master_key`,
    /// or outside production (with a warning) the public development key.
    pub fn secret_box(&self) -> crate::secretbox::SecretBox {
        match crate::secretbox::SecretBox::parse(&self.secrets.master_key) {
            Some(b) => b,
            None => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "secrets.master_key is not set: webhook secrets are sealed with the public development key \
                         (generate one with `openssl rand -base64 32`)"
                    );
                });
                crate::secretbox::SecretBox::development()
            }
        }
    }
}

/// `[database]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL.
    pub url: String,
    /// Pool size per process.
    pub max_connections: u32,
    /// `amqp.publish_events`, carried to the database sessions: a session
    /// that records events then also writes their AMQP copies to the outbox.
    #[serde(skip)]
    pub publish_events: bool,
}

/// `[amqp]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// Connection URL.
    pub url: String,
    /// Prepended to every exchange and queue name.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// Publish every event to the `payd.events` topic exchange too (from the
    /// outbox, after its commit, at least once). Set it alike on every process.
    #[serde(default)]
    pub publish_events: bool,
    /// PEM file of CA certificates trusted for `amqps://` beside the
    /// platform's (a broker with a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// What `ca_file` holds, read and checked at start.
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

/// `[http]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
}

/// `[payments]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// Delays before each retry after a transient failure.
    #[serde(deserialize_with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Delays before each inquiry (asking the provider what became of a
    /// call whose outcome is unknown) once the retries are used up.
    #[serde(deserialize_with = "duration_list")]
    pub inquiry_schedule: Vec<Duration>,
    /// Longest provider call; a claimed attempt older than twice this is re-run.
    #[serde(deserialize_with = "duration")]
    pub provider_timeout: Duration,
    /// How long a provider's "pending" answer waits for its notification
    /// before payd asks the provider again.
    #[serde(deserialize_with = "duration")]
    pub pending_timeout: Duration,
    /// A due attempt whose queue message has not led to a claim for this
    /// long is enqueued again (the message went missing).
    #[serde(deserialize_with = "duration")]
    pub requeue_after: Duration,
    /// Provider calls one worker process has in flight at once. Work
    /// messages are acked once their attempt is claimed, so this, not the
    /// AMQP prefetch, bounds a worker's concurrency against a slow provider.
    pub calls_in_flight: usize,
}

/// `[webhooks]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Delays between delivery attempts.
    #[serde(deserialize_with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Per-request timeout.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Allow loopback/private targets.
    pub allow_private_targets: bool,
    /// Disable an endpoint failing without success for this long.
    #[serde(deserialize_with = "duration")]
    pub disable_after: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight at once to one endpoint at first; the number
    /// adapts to how the endpoint answers (see `endpoint_concurrency_max`).
    pub endpoint_concurrency: usize,
    /// The most deliveries in flight at once to one endpoint that keeps up,
    /// so a slow or dead endpoint cannot take every slot.
    pub endpoint_concurrency_max: usize,
    /// Endpoints per merchant and mode (contract §11): each one multiplies
    /// every event's deliveries.
    pub max_endpoints: u32,
}

/// `[rate_limit]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per minute per key; 0 = off.
    pub per_minute: u32,
    /// Burst size per key.
    pub burst: u32,
}

/// `[faults]`: named points where the process aborts, as a `kill -9` would.
/// Only for crash tests; payd warns loudly when any is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Comma-separated fault points, e.g. `worker.after_provider_call`.
    #[serde(default, deserialize_with = "crash_points")]
    pub crash_at: Vec<CrashPoint>,
}

fn default_env() -> String {
    "production".to_owned()
}

/// Reads a PEM bundle of CA certificates; it must hold at least one.
fn read_ca(path: &Path) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { key: "amqp.ca_file", reason };
    let pem = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot be read: {e}")))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid("holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}

impl Settings {
    /// Loads settings from `config_dir` and the given environment variables.
    pub fn load(vars: &HashMap<String, String>, config_dir: &Path) -> Result<Self, ConfigError> {
        let env = vars.get("PAYD_ENV").map_or("production", String::as_str);
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from(config_dir.join("default.toml")).required(false))
            .add_source(config::File::from(config_dir.join(format!("{env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("PAYD")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(vars.clone().into_iter().collect())),
            );
        for (fallback, key, own) in
            [("DATABASE_URL", "database.url", "PAYD_DATABASE__URL"), ("AMQP_URL", "amqp.url", "PAYD_AMQP__URL")]
        {
            if let (Some(v), false) = (vars.get(fallback), vars.contains_key(own)) {
                builder = builder.set_override(key, v.as_str())?;
            }
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.database.publish_events = settings.amqp.publish_events;
        settings.amqp.ca_pem = settings.amqp.ca_file.as_deref().map(read_ca).transpose()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment and `PAYD_CONFIG_DIR` (default `config`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let dir = vars.get("PAYD_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
        Self::load(&vars, &dir)
    }

    /// True in `PAYD_ENV=development`.
    pub fn is_development(&self) -> bool {
        self.env == "development"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if !self.database.url.starts_with("postgres://") && !self.database.url.starts_with("postgresql://") {
            return invalid("database.url", "must start with postgres://");
        }
        if self.database.max_connections < 2 {
            return invalid("database.max_connections", "must be at least 2");
        }
        if !self.amqp.url.starts_with("amqp://") && !self.amqp.url.starts_with("amqps://") {
            return invalid("amqp.url", "must start with amqp:// or amqps://");
        }
        if self.amqp.prefetch == 0 {
            return invalid("amqp.prefetch", "must be at least 1");
        }
        if !self.amqp.prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c)) {
            return invalid("amqp.prefix", "may hold only letters, digits and . _ - :");
        }
        if self.payments.provider_timeout.is_zero() {
            return invalid("payments.provider_timeout", "must be longer than 0");
        }
        if self.webhooks.timeout.is_zero() {
            return invalid("webhooks.timeout", "must be longer than 0");
        }
        if self.webhooks.concurrency == 0 {
            return invalid("webhooks.concurrency", "must be at least 1");
        }
        if self.webhooks.endpoint_concurrency == 0 {
            return invalid("webhooks.endpoint_concurrency", "must be at least 1");
        }
        if self.webhooks.max_endpoints == 0 {
            return invalid("webhooks.max_endpoints", "must be at least 1");
        }
        if self.webhooks.endpoint_concurrency_max < self.webhooks.endpoint_concurrency {
            return invalid("webhooks.endpoint_concurrency_max", "must be at least webhooks.endpoint_concurrency");
        }
        if !(1..=65_536).contains(&self.payments.calls_in_flight) {
            return invalid("payments.calls_in_flight", "must be between 1 and 65536");
        }
        if self.payments.requeue_after < Duration::from_secs(1) {
            return invalid("payments.requeue_after", "must be at least 1s");
        }
        match (crate::secretbox::SecretBox::parse(&self.secrets.master_key), self.env.as_str()) {
            (Some(_), _) => {}
            (None, _) if !self.secrets.master_key.is_empty() => {
                return invalid("secrets.master_key", "must be the base64 of 32 bytes (openssl rand -base64 32)");
            }
            (None, "production") => {
                return invalid("secrets.master_key", "is required in production (openssl rand -base64 32)");
            }
            (None, _) => {}
        }
        if self.payments.inquiry_schedule.iter().any(Duration::is_zero) {
            return invalid("payments.inquiry_schedule", "every delay must be longer than 0");
        }
        if self.payments.pending_timeout.is_zero() {
            return invalid("payments.pending_timeout", "must be longer than 0");
        }
        for (name, p) in &self.providers {
            // The built-in Stripe provider takes only `base_url` (and `timeout`).
            if name == "stripe" {
                let url = p.base_url.as_deref().unwrap_or("https://");
                if !(url.starts_with("https://") || (self.env != "production" && url.starts_with("http://"))) {
                    return invalid("providers.stripe.base_url", "must be an https URL (http outside production)");
                }
                continue;
            }
            if p.secret.is_empty() {
                return invalid("providers.<name>.secret", &format!("provider {name} needs a secret"));
            }
            let is_url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
            match (name.as_str(), &p.base_url) {
                ("sandbox", _) => {}
                // Production gateways carry real card data and payd's bearer token.
                (_, Some(url)) if self.env == "production" && !url.starts_with("https://") => {
                    return invalid("providers.<name>.base_url", &format!("provider {name} needs an https base_url"));
                }
                (_, Some(url)) if is_url(url) => {}
                _ => {
                    return invalid("providers.<name>.base_url", &format!("provider {name} needs an http(s) base_url"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
