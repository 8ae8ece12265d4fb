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

/// What the kernel measured of one finished child.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Peak RSS in KiB (wait4's ru_maxrss: the child's own high-water mark).
    pub peak_rss_kib: i64,
    /// CPU time, user plus system: on a small machine the tools share cores with the server
    /// they talk to, so CPU spent is part of why one is slower.
    pub cpu: Duration,
}

/// Runs `cmd` to completion and returns what the kernel measured of it. Fails if it fails.
pub fn run_measured(cmd: &mut Command, what: &str) -> Result<Measured> {
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
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Measured {
        elapsed,
        peak_rss_kib: usage.ru_maxrss,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
    })
}

/// CPU time (user plus system) a running process has used so far, from `/proc/<pid>/stat`.
#[cfg_attr(not(feature = "etcd-bench"), allow(dead_code))]
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_micros(total * 1_000_000 / hz))
}
