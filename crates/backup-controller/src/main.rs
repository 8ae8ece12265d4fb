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
            backup_controller::telemetry::init();
            let shutdown = async {
                let _ = args::shutdown_signal().await;
            };
            match backup_controller::runtime::run(run.into_config(), shutdown).await {
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
