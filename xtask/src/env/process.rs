//! Detached child processes: spawn in a new session with output to a log file, record the pid in
//! a pid file, wait until healthy (reporting the log tail when it dies or times out), check that a
//! recorded pid is still ours, and stop it (SIGTERM, then SIGKILL after a grace period).
//!
//! "Ours" means `/proc/<pid>/cmdline` runs the same program and mentions the environment's
//! directory (every component gets paths under it), so a recycled pid is never killed.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
// `::tests` is the workspace's test library; the bare name would mean this file's `mod tests`.
use backup_localenv::env_state::{pid_alive, write_atomically};

/// How many log lines an error shows.
pub const LOG_TAIL: usize = 30;

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Display name, e.g. `c1/kube-apiserver`.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// File receiving stdout and stderr (truncated at start).
    pub log: PathBuf,
    /// File receiving the pid.
    pub pid_file: PathBuf,
}

/// A process we just started and still hold the handle of (to see an early exit).
#[derive(Debug)]
pub struct Started {
    /// Display name.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

/// Makes `command`'s child call `setsid(2)` before it executes, so the terminal's signals and
/// our exit do not reach it.
#[allow(unsafe_code)]
fn start_in_own_session(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls setsid, which is
    // async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `spec` detached (own session, stdin from /dev/null, output to its log), so it
/// outlives us, and writes its pid file.
pub fn spawn(spec: &Spec) -> Result<Started> {
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log =
        File::create(&spec.log).with_context(|| format!("creating {}", spec.log.display()))?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    start_in_own_session(&mut command);
    let child = command
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
    let pid = child.id();
    write_atomically(&spec.pid_file, &format!("{pid}\n"))?;
    Ok(Started {
        name: spec.name.clone(),
        pid,
        log: spec.log.clone(),
        child,
    })
}

impl Started {
    /// Polls `ready` until it returns true. Fails with the log tail if the process exits first or
    /// `timeout` passes.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail_lines(&self.log, LOG_TAIL)?
                );
            }
            if ready().unwrap_or(false) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} (pid {}) not ready after {} s; last lines of {}:\n{}",
                    self.name,
                    self.pid,
                    timeout.as_secs(),
                    self.log.display(),
                    tail_lines(&self.log, LOG_TAIL)?
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the process has already exited (reaping it if so).
    #[cfg(test)]
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Whether a failed start looks like losing a race for a port (so a retry with new ports helps).
pub fn is_port_collision(log: &Path) -> bool {
    tail_lines(log, LOG_TAIL)
        .map(|t| t.contains("address already in use"))
        .unwrap_or(false)
}

/// The last `n` lines of a log file (lossy UTF-8), or an empty string if it does not exist.
pub fn tail_lines(path: &Path, n: usize) -> Result<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(String::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(n)..].join("\n"))
}

/// The pid recorded in a pid file, if the file exists and holds one.
pub fn read_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// `/proc/<pid>/cmdline` as arguments.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether `pid` is alive, runs `program` and mentions `marker` (our environment directory).
pub fn is_ours(pid: u32, program: &Path, marker: &str) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    let Some(args) = cmdline(pid) else {
        return false;
    };
    let wanted = program.file_name();
    let same_program = args
        .first()
        .is_some_and(|a| Path::new(a).file_name() == wanted);
    same_program && args.iter().any(|a| a.contains(marker))
}

/// What a pid file says about its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The process runs and is ours.
    Running(u32),
    /// The pid file names a process that is gone (or is now someone else's).
    Stale(u32),
    /// No (readable) pid file.
    NoPidFile,
}

/// Reads `pid_file` and checks its process against `program` and `marker`.
pub fn liveness(pid_file: &Path, program: &Path, marker: &str) -> Liveness {
    match read_pid(pid_file) {
        None => Liveness::NoPidFile,
        Some(pid) if is_ours(pid, program, marker) => Liveness::Running(pid),
        Some(pid) => Liveness::Stale(pid),
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait for the process to disappear.
pub fn terminate(pid: u32, grace: Duration) -> Result<()> {
    let raw = libc::pid_t::try_from(pid).context("pid out of range")?;
    signal(raw, libc::SIGTERM);
    let start = Instant::now();
    while pid_alive(pid) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(pid) {
        signal(raw, libc::SIGKILL);
        let start = Instant::now();
        while pid_alive(pid) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if pid_alive(pid) {
            bail!("pid {pid} survived SIGKILL");
        }
    }
    Ok(())
}

/// Stops all `pids` at once: SIGTERM to each, wait up to `grace` for all, SIGKILL the rest.
pub fn terminate_all(pids: &[u32], grace: Duration) -> Result<()> {
    for pid in pids {
        signal(
            libc::pid_t::try_from(*pid).context("pid out of range")?,
            libc::SIGTERM,
        );
    }
    let start = Instant::now();
    while pids.iter().any(|p| pid_alive(*p)) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in pids.iter().filter(|p| pid_alive(**p)) {
        terminate(*pid, Duration::ZERO)?;
    }
    Ok(())
}

/// Sends `sig` to the process group led by `pid` (our components lead their own session), and
/// to `pid` itself in case it no longer leads one.
#[allow(unsafe_code)]
fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is a process verified as ours.
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-env-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_stale_pid_file_is_not_running() {
        let dir = temp_dir("stale");
        let marker = dir.to_string_lossy().into_owned();
        let mut child = Command::new("true").arg(&marker).spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let pid_file = dir.join("gone.pid");
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
        assert_eq!(
            liveness(&pid_file, Path::new("/bin/true"), &marker),
            Liveness::Stale(pid)
        );
        // A live process that is not ours (this test binary) is stale too, and never killed.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert!(matches!(
            liveness(&pid_file, Path::new("/usr/bin/etcd"), &marker),
            Liveness::Stale(_)
        ));
        std::fs::remove_file(&pid_file).unwrap();
        assert_eq!(
            liveness(&pid_file, Path::new("/bin/true"), &marker),
            Liveness::NoPidFile
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_detached_process_is_ours_and_stops() {
        let dir = temp_dir("sleep");
        let marker = dir.to_string_lossy().into_owned();
        let sh = PathBuf::from("/bin/sh");
        let spec = Spec {
            name: "test/sleep".into(),
            program: sh.clone(),
            args: vec!["-c".into(), format!("sleep 60; : {marker}")],
            log: dir.join("sleep.log"),
            pid_file: dir.join("sleep.pid"),
        };
        let mut started = spawn(&spec).unwrap();
        started
            .wait_ready(Duration::from_secs(5), || {
                Ok(is_ours(started_pid(&spec), &sh, &marker))
            })
            .unwrap();
        assert_eq!(
            liveness(&spec.pid_file, &sh, &marker),
            Liveness::Running(started.pid)
        );
        assert!(!is_ours(started.pid, &sh, "/some/other/env"));
        terminate_all(&[started.pid], Duration::from_secs(5)).unwrap();
        assert!(started.has_exited());
        assert!(matches!(
            liveness(&spec.pid_file, &sh, &marker),
            Liveness::Stale(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn started_pid(spec: &Spec) -> u32 {
        read_pid(&spec.pid_file).unwrap_or(0)
    }

    #[test]
    fn a_process_that_fails_to_start_reports_its_log_tail() {
        let dir = temp_dir("badflag");
        let spec = Spec {
            name: "test/etcd".into(),
            program: PathBuf::from("etcd"),
            args: vec![
                "--no-such-flag".into(),
                format!("--data-dir={}", dir.display()),
            ],
            log: dir.join("etcd.log"),
            pid_file: dir.join("etcd.pid"),
        };
        let Ok(mut started) = spawn(&spec) else {
            eprintln!("etcd is not installed; skipping");
            return;
        };
        let err = started
            .wait_ready(Duration::from_secs(10), || Ok(false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited during start-up"), "{err}");
        assert!(
            err.contains("no-such-flag"),
            "the error should quote etcd's log: {err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
