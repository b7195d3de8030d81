//! The `payd` binary: parse the command line, load settings, run.

use clap::Parser;

use payd::cli::{self, Cli};
use payd::config::Settings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    payd::telemetry::init(settings.log_format, &settings.log_filter);
    payd::install_crypto();
    match cli::run(cli, settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "payd failed");
            eprintln!("payd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
