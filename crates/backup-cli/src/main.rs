//! `backupctl`: the backup system's operations for people and scripts.
//! Only wiring lives here; each command group has its own module.

mod cli;
mod commands;
mod output;
mod telemetry;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = telemetry::init(cli.verbose) {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match commands::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
