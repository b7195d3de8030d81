//! Settings: defaults, overrides, validation.

use super::*;

/// A master key for the tests' production settings (the tests about it pass their own).
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vars.entry("PAYD_SECRETS__MASTER_KEY".into()).or_insert_with(|| MASTER_KEY.into());
    Settings::load(&vars, Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")))
}

#[test]
fn production_needs_a_master_key_and_no_debug_shows_a_secret() {
    let err = load(&[("PAYD_SECRETS__MASTER_KEY", "")]).unwrap_err().to_string();
    assert!(err.contains("secrets.master_key") && err.contains("required"), "{err}");
    let err = load(&[("PAYD_SECRETS__MASTER_KEY", "c2hvcnQ=")]).unwrap_err().to_string();
    assert!(err.contains("secrets.master_key") && err.contains("32 bytes"), "{err}");
    let s = load(&[("PAYD_ENV", "development"), ("PAYD_SECRETS__MASTER_KEY", "")]).unwrap();
    assert!(s.secrets.master_key.is_empty(), "development runs without one");
    let s = load(&[
        ("PAYD_PROVIDERS__ACME__SECRET", "bearer-s3cret"),
        ("PAYD_PROVIDERS__ACME__NOTIFICATION_SECRET", "notes-s3cret"),
        ("PAYD_PROVIDERS__ACME__BASE_URL", "https://gw.example"),
    ])
    .unwrap();
    let shown = format!("{s:?}");
    for secret in ["bearer-s3cret", "notes-s3cret", MASTER_KEY] {
        assert!(!shown.contains(secret), "Debug shows {secret}");
    }
}

#[test]
fn defaults_match_the_contract() {
    let s = load(&[]).unwrap();
    assert_eq!(s.env, "production");
    assert_eq!(s.database.url, "postgres://localhost/payd");
    assert_eq!(s.amqp.prefix, "");
    assert_eq!(s.http.listen.to_string(), "127.0.0.1:8080");
    let mins: Vec<u64> = s.payments.retry_schedule.iter().map(|d| d.as_secs() / 60).collect();
    assert_eq!(mins, [1, 5, 30, 120, 360]);
    assert_eq!(s.webhooks.retry_schedule.len(), 7);
    assert_eq!(s.webhooks.timeout, Duration::from_secs(15));
    assert_eq!(s.webhooks.disable_after, Duration::from_secs(5 * 86400));
    assert!(!s.webhooks.allow_private_targets);
    assert_eq!((s.rate_limit.per_minute, s.rate_limit.burst), (100, 20));
    assert!(s.providers.contains_key("sandbox"));
    assert!(!s.amqp.publish_events && !s.database.publish_events);
    let s = load(&[("PAYD_AMQP__PUBLISH_EVENTS", "true")]).unwrap();
    assert!(s.database.publish_events, "the database sessions carry amqp.publish_events");
}

#[test]
fn env_file_then_variables_override() {
    let s = load(&[("PAYD_ENV", "development")]).unwrap();
    assert!(s.is_development());
    assert!(s.webhooks.allow_private_targets);
    let s = load(&[
        ("PAYD_ENV", "development"),
        ("PAYD_WEBHOOKS__ALLOW_PRIVATE_TARGETS", "false"),
        ("PAYD_AMQP__PREFIX", "t1."),
        ("PAYD_LOG_FORMAT", "json"),
    ])
    .unwrap();
    assert!(!s.webhooks.allow_private_targets);
    assert_eq!(s.amqp.prefix, "t1.");
    assert_eq!(s.log_format, LogFormat::Json);
}

#[test]
fn generic_url_variables_are_fallbacks() {
    let s = load(&[("DATABASE_URL", "postgres://a/b")]).unwrap();
    assert_eq!(s.database.url, "postgres://a/b");
    let s = load(&[("DATABASE_URL", "postgres://a/b"), ("PAYD_DATABASE__URL", "postgres://c/d")]).unwrap();
    assert_eq!(s.database.url, "postgres://c/d");
    let s = load(&[("AMQP_URL", "amqp://x")]).unwrap();
    assert_eq!(s.amqp.url, "amqp://x");
}

#[test]
fn bad_settings_are_named() {
    let err = load(&[("PAYD_PAYMENTS__RETRY_SCHEDULE", "1m,soon")]).unwrap_err().to_string();
    assert!(err.contains("retry_schedule") && err.contains("soon"), "{err}");
    let err = load(&[("PAYD_HTTP__LISTEN", "nowhere")]).unwrap_err().to_string();
    assert!(err.contains("listen"), "{err}");
    let err = load(&[("PAYD_DATABASE__URL", "mysql://x")]).unwrap_err().to_string();
    assert!(err.contains("database.url"), "{err}");
    let err = load(&[("PAYD_WEBHOOKS__TIMEOUT", "0s")]).unwrap_err().to_string();
    assert!(err.contains("webhooks.timeout"), "{err}");
    let err = load(&[("PAYD_PROVIDERS__ACME__SECRET", "s")]).unwrap_err().to_string();
    assert!(err.contains("base_url") && err.contains("acme"), "{err}");
    let gateway = [("PAYD_PROVIDERS__ACME__SECRET", "s"), ("PAYD_PROVIDERS__ACME__BASE_URL", "http://127.0.0.1:1")];
    // In production a gateway must be https; elsewhere http will do.
    let err = load(&gateway).unwrap_err().to_string();
    assert!(err.contains("base_url") && err.contains("https"), "{err}");
    let s = load(&[gateway[0], gateway[1], ("PAYD_ENV", "development")]).unwrap();
    assert_eq!(s.providers["acme"].timeout, Duration::from_secs(10));
    let err = load(&[("PAYD_PAYMENTS__INQUIRY_SCHEDULE", "1m,0s")]).unwrap_err().to_string();
    assert!(err.contains("payments.inquiry_schedule"), "{err}");
    let err = load(&[("PAYD_PAYMENTS__CALLS_IN_FLIGHT", "0")]).unwrap_err().to_string();
    assert!(err.contains("payments.calls_in_flight"), "{err}");
    assert_eq!(load(&[]).unwrap().payments.calls_in_flight, 1024);
    let err = load(&[("PAYD_AMQP__CA_FILE", "/nonexistent/ca.pem")]).unwrap_err().to_string();
    assert!(err.contains("amqp.ca_file") && err.contains("cannot be read"), "{err}");
    let err = load(&[("PAYD_AMQP__CA_FILE", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))]).unwrap_err();
    assert!(err.to_string().contains("amqp.ca_file"), "{err}");
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
    assert!(load(&[("PAYD_AMQP__CA_FILE", ca)]).unwrap().amqp.ca_pem.is_some_and(|p| p.contains("CERTIFICATE")));
}

#[test]
fn stripe_needs_only_an_https_base_url_in_production() {
    let s = load(&[]).unwrap();
    assert_eq!(s.providers["stripe"].base_url.as_deref(), Some("https://api.stripe.com"));
    assert!(s.providers["stripe"].secret.is_empty(), "merchants bring their own keys");
    let err = load(&[("PAYD_PROVIDERS__STRIPE__BASE_URL", "http://localhost:12111")]).unwrap_err().to_string();
    assert!(err.contains("providers.stripe.base_url"), "{err}");
    let s = load(&[("PAYD_ENV", "test"), ("PAYD_PROVIDERS__STRIPE__BASE_URL", "http://127.0.0.1:12111")]).unwrap();
    assert_eq!(s.providers["stripe"].base_url.as_deref(), Some("http://127.0.0.1:12111"));
    let err = load(&[("PAYD_ENV", "test"), ("PAYD_PROVIDERS__STRIPE__BASE_URL", "ftp://x")]).unwrap_err().to_string();
    assert!(err.contains("providers.stripe.base_url"), "{err}");
}
