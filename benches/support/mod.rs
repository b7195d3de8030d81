//! What the benchmarks share: a fresh database, settings, measurements.

use std::collections::HashMap;

#[allow(dead_code, reason = "each benchmark uses its part of the support")]
pub mod fanout;
#[allow(dead_code, reason = "each benchmark uses its part of the support")]
pub mod procs;

use payd::config::Settings;
use sqlx::{Connection, PgConnection};

/// A database created for one benchmark run, dropped by [`BenchDb::drop_db`].
pub struct BenchDb {
    admin: PgConnection,
    name: String,
    /// Its URL.
    pub url: String,
}

impl BenchDb {
    /// Creates `payd_bench_<uuid>` on PAYD_TEST_DATABASE_URL's server.
    pub async fn create() -> Self {
        let server = std::env::var("PAYD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".into());
        let name = format!("payd_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{server}/postgres")).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        Self { admin, url: format!("{server}/{name}"), name }
    }

    /// Drops the database.
    pub async fn drop_db(mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut self.admin).await.ok();
    }
}

/// Settings from `config/` with these variables.
pub fn settings(vars: &[(&str, &str)]) -> Settings {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Settings::load(&vars, std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))).unwrap()
}

/// This process's resident memory, in KiB.
#[allow(dead_code, reason = "the webhooks benchmark reads its dispatcher process instead")]
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
