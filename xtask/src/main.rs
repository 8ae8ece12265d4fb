//! `cargo xtask`: the project's own tooling (local control plane, demo, benchmarks).
//! Only wiring lives here; each command has its own module.

mod bench;
mod crds;
mod demo;
mod env;
mod fleet;
mod helm_sdk;
mod test_runner;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Env(cmd) => env::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Test(args) => test_runner::run(args),
        Command::Crds(args) => crds::run(args),
    }
}
