//! `backup-controller`: wiring only. `run` starts the controller, `crds` prints our CRDs.

mod args;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    match cli.command {
        args::Command::Crds => match args::print_crds() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        args::Command::Run(run) => {
            let config = match run.into_config() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            if let Err(e) = backup_controller::telemetry::init() {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
            let shutdown = async {
                let _ = args::shutdown_signal().await;
            };
            match backup_controller::runtime::run(config, shutdown).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
