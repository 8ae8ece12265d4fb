//! What every benchmark needs to measure our binary as a user runs it: a release `backupctl`,
//! and a child run that reports wall time and peak memory.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Builds `backupctl` in release mode and returns its path.
pub fn build_backupctl() -> Result<PathBuf> {
    crate::fleet::build("backup-cli", "backupctl", true)
}

/// What the kernel measured of one finished child.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Peak RSS in KiB: the child's own high-water mark, as the kernel counts it.
    pub peak_rss_kib: i64,
    /// CPU time, user plus system: on a small machine the tools share cores with the server
    /// they talk to, so CPU spent is part of why one is slower.
    pub cpu: Duration,
}

/// Runs `cmd` to completion under GNU time and returns what the kernel measured of it. Fails if
/// it fails.
///
/// Why not wait4 on our own child: the child is spawned with vfork semantics, and the kernel
/// records the address space it leaves at exec — ours — in the child's maximum RSS, so after
/// the benchmark driver has grown (e.g. by creating 50k objects) every child would report the
/// driver's size. `/usr/bin/time` is a small process that forks the command itself, so the
/// command's maximum RSS is its own.
pub fn run_measured(cmd: &Command, stdout: Stdio, what: &str) -> Result<Measured> {
    let report = tempfile::NamedTempFile::new()?;
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["--quiet", "-f", "%U %S %M", "-o"])
        .arg(report.path())
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(stdout);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = Instant::now();
    let status = timed
        .status()
        .with_context(|| format!("running {what} under /usr/bin/time (Debian package time)"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    let text = std::fs::read_to_string(report.path())?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [user, system, rss] = fields[..] else {
        bail!("unexpected /usr/bin/time report for {what}: {text:?}");
    };
    let secs = |v: &str| -> Result<Duration> {
        Ok(Duration::from_secs_f64(v.parse().with_context(|| {
            format!("unexpected /usr/bin/time report for {what}: {text:?}")
        })?))
    };
    Ok(Measured {
        elapsed,
        peak_rss_kib: rss
            .parse()
            .with_context(|| format!("unexpected /usr/bin/time report for {what}: {text:?}"))?,
        cpu: secs(user)? + secs(system)?,
    })
}

/// CPU time (user plus system) a running process has used so far, from `/proc/<pid>/stat`.
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
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_micros(
        total * 1_000_000 / clock_ticks_per_second(),
    ))
}

/// The kernel's clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc/<pid>/stat` times.
#[allow(unsafe_code)]
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(0).max(1)
}
