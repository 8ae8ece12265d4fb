//! The real `backupctl` binary for suites outside its own crate (cargo gives a test target the
//! path of its own package's binaries only).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};

/// `backupctl`, built as the running tests were (`cargo build -p backup-cli --bin backupctl`,
/// the same target directory): up to date with the sources, never a stale copy lying in
/// `target/`. Cargo decides what to rebuild, so after a workspace build this costs a second.
pub fn backupctl() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = Command::new(&cargo)
        .args(["build", "-p", "backup-cli", "--bin", "backupctl"])
        .args(["--message-format", "json-render-diagnostics"])
        .output()
        .with_context(|| format!("running {cargo} build -p backup-cli"))?;
    ensure!(
        out.status.success(),
        "cargo build -p backup-cli --bin backupctl failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["target"]["name"] == "backupctl"
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(path));
        }
    }
    bail!("cargo build -p backup-cli named no backupctl executable")
}

/// Runs `backupctl` with `args` and only what they say (no kubeconfig or S3 endpoint from
/// the environment); fails with its output unless it succeeds, else returns its stdout.
pub fn run_backupctl(args: &[&str]) -> Result<String> {
    let out: Output = Command::new(backupctl()?)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .context("running backupctl")?;
    ensure!(
        out.status.success(),
        "backupctl {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
