//! What every benchmark needs to measure our binary as a user runs it: a release `backupctl`,
//! and a child run that reports wall time and peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Builds `backupctl` in release mode and returns its path.
pub fn build_backupctl() -> Result<PathBuf> {
    eprintln!("building backupctl (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "backup-cli",
            "--bin",
            "backupctl",
        ])
        .status()?;
    ensure!(
        status.success(),
        "cargo build --release -p backup-cli failed"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/backupctl"))
}

/// Runs `cmd` to completion and returns its wall time and peak RSS in KiB (wait4's
/// ru_maxrss: the child's own high-water mark, measured by the kernel). Fails if it fails.
pub fn run_measured(cmd: &mut Command, what: &str) -> Result<(Duration, i64)> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("running {what}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, reaped here (the Child
    // handle is not waited on afterwards).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    if reaped != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{what} failed (status {status})");
    }
    Ok((elapsed, usage.ru_maxrss))
}
