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
    telemetry::init(cli.verbose);
    match commands::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
