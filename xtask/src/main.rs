//! `cargo xtask`: the project's own tooling (local control plane, demo, benchmarks).
//! Only wiring lives here; each command has its own module.

mod bench;
mod crds;
mod demo;
mod env;
mod fleet;
mod fresh_check;
mod helm_sdk;
mod prerequisites;
mod proto;
mod test_runner;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use prerequisites::Needs;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tooling: local control plane, demo, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the local control plane (etcd, kube-apiserver, controller-manager, S3) on 127.0.0.1.
    #[command(subcommand)]
    Env(env::EnvCommand),
    /// Run the main job end to end on the embedded defaults and print a report.
    Demo(demo::DemoArgs),
    /// Benchmarks that compare us against a named peer in the same run and print the ratio.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Everything CI runs: install prerequisites, fmt, clippy, local control plane, all tests.
    Test(test_runner::TestArgs),
    /// Write CustomResourceDefinition YAML: ours (default) or `velero`, to stdout or `--out DIR`.
    Crds(crds::CrdsArgs),
    /// Run the README's set-up commands exactly as written in a clean Debian bookworm root
    /// filesystem (user, mount and PID namespaces; needs root), and report each one's time.
    FreshCheck(fresh_check::FreshCheckArgs),
    /// Regenerate the etcd gRPC client from its proto file (`--check`: only compare), no protoc.
    Proto(proto::ProtoArgs),
}

impl Command {
    /// What the command needs on the machine before it compiles or runs anything.
    fn needs(&self) -> Needs {
        match self {
            Command::Env(cmd) => cmd.needs(),
            Command::Demo(args) if args.storage_only => Needs::nothing(),
            Command::Demo(_) => Needs::control_plane(),
            Command::Bench(cmd) => cmd.needs(),
            Command::Test(_) => Needs::tests(),
            Command::Crds(_) | Command::Proto(_) => Needs::nothing(),
            Command::FreshCheck(_) => Needs::debian(fresh_check::MMDEBSTRAP),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One message with its causes, no backtrace: every error here says what to do.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs what `command` needs (one step for every command), then runs it.
fn run(command: Command) -> anyhow::Result<()> {
    let installed = prerequisites::ensure(&command.needs())?;
    match command {
        Command::Env(cmd) => env::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Test(args) => {
            let helm_python = installed
                .helm_python
                .expect("the test command needs Helm's SDK");
            test_runner::run(args, &helm_python)
        }
        Command::Crds(args) => crds::run(args),
        Command::Proto(args) => proto::run(args),
        Command::FreshCheck(args) => fresh_check::run(args),
    }
}

/// The workspace root (xtask's own manifest directory's parent), whatever the current directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}
