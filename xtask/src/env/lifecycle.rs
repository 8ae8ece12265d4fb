//! `env up`, `env down` and `env status`: the environment as a whole.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::cluster::{self, Shared};
use super::ports::PortPicker;
use super::process::{self, Liveness};
use super::{azurite, certs, health, kubeconfig, kubernetes_build, s3};
use crate::prerequisites::Needs;
use backup_localenv::env_state::{ClusterState, EnvState, ProcessState, STATE_FILE};
use backup_localenv::lock::FileLock;

/// File that marks a directory as an environment made by us (so `down` may delete it).
const MARKER_FILE: &str = ".backup-fleet-env";
/// Programs we start; only processes running one of these are ever signalled.
const PROGRAMS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "s3s-fs",
    // Azurite (`node .../azurite-blob`).
    "node",
];
/// How long a process gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// `<dir>.lock`, next to the directory so it survives the directory's removal.
pub fn lock_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}.lock"))
}

/// The string every command line of this environment contains: its directory.
fn marker(dir: &Path) -> String {
    format!("{}/", dir.display())
}

/// `mgmt`, then `c1` … `c<n-1>`, with their roles.
fn cluster_names(n: usize) -> Vec<(String, &'static str)> {
    std::iter::once(("mgmt".to_owned(), "management"))
        .chain((1..n).map(|i| (format!("c{i}"), "user")))
        .collect()
}

/// Starts the environment, or reuses it when it is already up, healthy and of size `n`.
pub fn up(dir: &Path, n: usize) -> Result<()> {
    let start = Instant::now();
    let _lock = FileLock::acquire(
        &lock_path(dir),
        "another `env` command holds this directory; waiting…",
    )?;
    let previous = match EnvState::load(dir) {
        Ok(state) => state,
        Err(err) => {
            println!("ignoring unreadable state: {err:#}");
            None
        }
    };
    if let Some(state) = &previous {
        let problems = problems(state);
        if problems.is_empty() && state.clusters.len() == n && state.azure.is_some() {
            print_info(state);
            println!(
                "already up and healthy (checked in {:.1} s)",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if problems.is_empty() && state.clusters.len() == n {
            // Started before Azurite was part of the environment: add it, leave the rest running.
            crate::prerequisites::ensure(&Needs::control_plane())?;
            let azurite_bins = azurite::ensure_installed()?;
            let mut state = state.clone();
            let picker = Mutex::new(PortPicker::new());
            state.azure = Some(azurite::start(dir, &picker, &azurite_bins, None)?);
            state.save()?;
            print_info(&state);
            println!("Azurite added in {:.1} s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if state.clusters.len() != n {
            println!(
                "the environment has {} clusters, {n} wanted: restarting it",
                state.clusters.len()
            );
        } else {
            println!("the environment is not healthy, restarting it from scratch:");
            for problem in &problems {
                println!("  {problem}");
            }
        }
    }
    if dir.exists() {
        teardown(dir)?;
    }

    crate::prerequisites::ensure(&Needs::control_plane())?;
    let bins = kubernetes_build::ensure_built()?;
    let s3s_fs = s3::ensure_binary()?;
    let azurite_bins = azurite::ensure_installed()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER_FILE), "made by `cargo xtask env up`\n")?;
    let pki = certs::generate(&dir.join("pki"))?;
    let picker = Mutex::new(PortPicker::new());
    let shared = Shared {
        dir,
        bins: &bins,
        pki: &pki,
        ports: &picker,
    };
    let names = cluster_names(n);
    println!(
        "starting {n} clusters ({}), S3 and Azurite in {}",
        names
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    );

    let prev_ports = |name: &str| {
        previous
            .as_ref()
            .and_then(|s| s.clusters.iter().find(|c| c.name == name))
            .map(|c| c.ports)
    };
    let (clusters, s3, azure) = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|(name, role)| {
                let shared = &shared;
                let ports = prev_ports(name);
                scope.spawn(move || cluster::start(shared, name, role, ports))
            })
            .collect();
        let s3 = s3::start(
            &shared,
            &s3s_fs,
            previous.as_ref().map(|s| s.s3.process.port),
        );
        let azure = azurite::start(
            dir,
            &picker,
            &azurite_bins,
            previous
                .as_ref()
                .and_then(|s| s.azure.as_ref())
                .map(|a| a.process.port),
        );
        let clusters: Vec<Result<ClusterState>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a cluster start thread panicked")))
            })
            .collect();
        (clusters, s3, azure)
    });
    let mut errors: Vec<String> = clusters
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| format!("{e:#}"))
        .collect();
    if let Err(err) = &s3 {
        errors.push(format!("{err:#}"));
    }
    if let Err(err) = &azure {
        errors.push(format!("{err:#}"));
    }
    if !errors.is_empty() {
        stop_processes(dir)?;
        bail!(
            "env up failed; everything started was stopped, logs are kept in {} \
             (`cargo xtask env down` removes them):\n\n{}",
            dir.display(),
            errors.join("\n\n")
        );
    }
    let clusters: Vec<ClusterState> = clusters.into_iter().filter_map(Result::ok).collect();
    let s3 = s3?;
    let azure = Some(azure?);

    let merged = dir.join("kubeconfig");
    let entries: Vec<kubeconfig::Entry<'_>> = clusters
        .iter()
        .map(|c| kubeconfig::Entry {
            name: &c.name,
            server: &c.apiserver_url,
            ca_file: &c.ca_file,
            token: &c.token,
        })
        .collect();
    kubeconfig::write(&merged, &entries, "mgmt")?;
    let state = EnvState {
        dir: dir.to_path_buf(),
        kubernetes_version: kubernetes_build::VERSION.into(),
        kubeconfig: merged,
        clusters,
        s3,
        azure,
    };
    state.save()?;
    print_info(&state);
    println!("up in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Stops every process of the environment in `dir` and removes the directory.
pub fn down(dir: &Path) -> Result<()> {
    let _lock = FileLock::acquire(
        &lock_path(dir),
        "another `env` command holds this directory; waiting…",
    )?;
    if !dir.exists() {
        println!("nothing to do: {} does not exist", dir.display());
        return Ok(());
    }
    teardown(dir)?;
    println!("environment in {} stopped and removed", dir.display());
    Ok(())
}

/// Prints every process with pid, port, liveness and health.
pub fn status(dir: &Path) -> Result<()> {
    let Some(state) = EnvState::load(dir)? else {
        let running = our_processes(dir);
        println!(
            "no environment state in {} (env.json missing)",
            dir.display()
        );
        if !running.is_empty() {
            println!(
                "{} of its processes still run; `cargo xtask env down` stops them",
                running.len()
            );
        }
        return Ok(());
    };
    println!(
        "{:<32} {:>8} {:>6}  {:<7} health",
        "process", "pid", "port", "alive"
    );
    let mut all_ok = true;
    for proc in state.processes() {
        let alive = matches!(
            process::liveness(&proc.pid_file, &proc.program, &marker(dir)),
            Liveness::Running(_)
        );
        let healthy = alive && probe(&state, proc);
        all_ok &= healthy;
        println!(
            "{:<32} {:>8} {:>6}  {:<7} {}",
            proc.name,
            proc.pid,
            proc.port,
            if alive { "yes" } else { "NO" },
            if healthy { "ok" } else { "FAILING" }
        );
    }
    println!(
        "{}",
        if all_ok {
            "all healthy"
        } else {
            "NOT healthy: `cargo xtask env up` repairs it"
        }
    );
    Ok(())
}

/// What is wrong with a recorded environment (empty when it is up and healthy).
fn problems(state: &EnvState) -> Vec<String> {
    let marker = marker(&state.dir);
    let mut problems = Vec::new();
    for proc in state.processes() {
        match process::liveness(&proc.pid_file, &proc.program, &marker) {
            Liveness::Running(pid) if pid == proc.pid => {
                if !probe(state, proc) {
                    problems.push(format!(
                        "{} (pid {}) fails its health check {}",
                        proc.name, pid, proc.health_url
                    ));
                }
            }
            Liveness::Running(pid) => problems.push(format!(
                "{}: pid file says {pid}, state says {}",
                proc.name, proc.pid
            )),
            Liveness::Stale(pid) => problems.push(format!(
                "{}: stale pid file (pid {pid} is not running)",
                proc.name
            )),
            Liveness::NoPidFile => problems.push(format!("{}: no pid file", proc.name)),
        }
    }
    problems
}

/// Probes one process's health URL the way its kind needs.
fn probe(state: &EnvState, proc: &ProcessState) -> bool {
    let cluster = state
        .clusters
        .iter()
        .find(|c| proc.name.starts_with(&format!("{}/", c.name)));
    match (proc.name.rsplit('/').next(), cluster) {
        (Some("kube-apiserver"), Some(c)) => {
            health::ok(&proc.health_url, Some(&c.ca_file), Some(&c.token))
        }
        (Some("kube-controller-manager"), Some(c)) => {
            health::ok(&proc.health_url, Some(&c.ca_file), None)
        }
        (Some("etcd"), _) => health::ok(&proc.health_url, None, None),
        _ => health::status(&proc.health_url, None, None) != 0,
    }
}

/// Pid files under `dir` (one level of cluster directories) whose process is alive and ours.
fn our_processes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let marker = marker(dir);
    let mut pid_files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        dirs.extend(
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
    }
    for d in dirs {
        if let Ok(entries) = std::fs::read_dir(&d) {
            pid_files.extend(
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "pid")),
            );
        }
    }
    pid_files
        .into_iter()
        .filter_map(|f| {
            let pid = process::read_pid(&f)?;
            PROGRAMS
                .iter()
                .any(|p| process::is_ours(pid, Path::new(p), &marker))
                .then_some((f, pid))
        })
        .collect()
}

/// Stops our processes in `dir` (controller-managers and apiservers before etcd), removing
/// their pid files; stale pid files are left for the caller to delete with the data.
fn stop_processes(dir: &Path) -> Result<usize> {
    let running = our_processes(dir);
    let pids: Vec<u32> = running.iter().map(|(_, pid)| *pid).collect();
    process::terminate_all(&pids, GRACE)?;
    for (pid_file, _) in &running {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(running.len())
}

/// Stops everything and deletes `dir`, refusing to delete a directory we did not make.
fn teardown(dir: &Path) -> Result<()> {
    let stopped = stop_processes(dir)?;
    if stopped > 0 {
        println!("stopped {stopped} processes");
    }
    let ours = dir.join(MARKER_FILE).exists() || dir.join(STATE_FILE).exists();
    let empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    if !ours && !empty {
        bail!(
            "{} is not an environment directory (no {MARKER_FILE}); refusing to delete it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Prints where everything is and how to use it.
fn print_info(state: &EnvState) {
    println!(
        "local control plane: {} clusters, Kubernetes {}",
        state.clusters.len(),
        state.kubernetes_version
    );
    for c in &state.clusters {
        println!(
            "  {:<5} {:<24} {:<10} etcd {}  kubeconfig {}",
            c.name,
            c.apiserver_url,
            c.role,
            c.etcd_endpoint,
            c.kubeconfig.display()
        );
    }
    println!(
        "  s3    {}  location {}  root {}",
        state.s3.endpoint,
        state.s3.location,
        state.s3.root.display()
    );
    if let Some(azure) = &state.azure {
        println!(
            "  azure {}  location {}  root {}",
            azure.endpoint,
            azure.location,
            azure.root.display()
        );
    }
    println!("use it:");
    println!(
        "  export KUBECONFIG={}   # contexts: {}",
        state.kubeconfig.display(),
        state
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  source {}", state.s3.env_file.display());
    if let Some(azure) = &state.azure {
        println!(
            "  source {}   # for {}",
            azure.env_file.display(),
            azure.location
        );
    }
    println!("  state (JSON): {}", state.dir.join(STATE_FILE).display());
}
