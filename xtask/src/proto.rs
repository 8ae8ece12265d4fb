//! `cargo xtask proto [--check]`: regenerates (or compares) the committed etcd gRPC client code.
//! The generator is its own package, `xtask-proto` (see its doc for why); this only runs it.

use anyhow::{Result, ensure};

/// Arguments of `cargo xtask proto`.
#[derive(clap::Args, Debug)]
pub struct ProtoArgs {
    /// Only compare: fail if the committed code differs from what the proto file generates.
    #[arg(long)]
    pub check: bool,
}

/// Runs `cargo run -p xtask-proto`.
pub fn run(args: ProtoArgs) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["run", "--quiet", "-p", "xtask-proto", "--"]);
    if args.check {
        command.arg("--check");
    }
    let status = command.status()?;
    ensure!(status.success(), "cargo xtask proto failed ({status})");
    Ok(())
}
