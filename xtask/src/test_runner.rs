//! `cargo xtask test`: the README's test command and the body of `.ci/run`.
//!
//! One command a newcomer can run on a fresh Debian machine: it installs what is missing, checks
//! formatting and lints, brings the local control plane up, runs every test against it, and
//! takes the control plane down again even when tests fail.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::env;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and `cargo clippy` (faster local iterations).
    #[arg(long)]
    pub skip_lints: bool,
    /// Leave the local control plane running afterwards (to rerun single tests quickly).
    #[arg(long)]
    pub keep_env: bool,
    /// Extra arguments passed to `cargo test` (after `--workspace`).
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Runs the suite; `cargo xtask` has installed [`crate::prerequisites::Needs::tests`] first.
pub fn run(args: TestArgs, helm_python: &Path) -> Result<()> {
    crate::proto::run(crate::proto::ProtoArgs { check: true })?;
    if !args.skip_lints {
        cargo(&["fmt", "--all", "--check"]).context("formatting differs: run `cargo fmt --all`")?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    let env_dir = env::default_dir()?;
    env::up_default(&env_dir)?;
    // Every test binary runs even after one fails, so one run names every failure (a fresh
    // machine's or CI's run is long to repeat).
    let mut test_args = vec!["test", "--workspace", "--no-fail-fast"];
    test_args.extend(args.cargo_test_args.iter().map(String::as_str));
    let tests = cargo_with_env(
        &test_args,
        &[
            ("BACKUP_TEST_ENV_DIR", env_dir.as_os_str()),
            ("BACKUP_HELM_PYTHON", helm_python.as_os_str()),
        ],
    );
    if !args.keep_env
        && let Err(err) = env::down(&env_dir)
    {
        eprintln!("warning: taking the local control plane down failed: {err:#}");
    }
    tests
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

fn cargo_with_env(args: &[&str], vars: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(vars.iter().copied())
        .status()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
