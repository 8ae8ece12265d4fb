//! `cargo xtask env`: the local control plane on 127.0.0.1 — per cluster a real etcd 3.4,
//! kube-apiserver and kube-controller-manager 1.20.2 (built once from Debian's source package),
//! plus one S3 server (s3s-fs) and one Azure Blob Storage emulator (Azurite).
//!
//! Layout of the environment directory (default `<workspace>/target/local-env`, or
//! `$BACKUP_TEST_ENV_DIR`): `env.json` (state), `kubeconfig` (merged), `<cluster>.kubeconfig`,
//! `<cluster>.inline.kubeconfig` (self-contained, as kept in a Secret),
//! `s3.env`, `pki/`, `<cluster>/` (etcd data, logs, pid files), `s3/` (buckets), `s3.log`,
//! `azure.env`, `azurite/` (containers), `azurite.log`.
//! `<dir>.lock` next to it serialises `up`/`down` (and the test harness) across processes.
//!
//! `up` is idempotent: a healthy environment of the requested size is left alone; anything else
//! (stale pid files, a dead or unhealthy process, a different size) is torn down and started
//! fresh, keeping the previous ports where they are still free.

mod azurite;
mod certs;
mod cluster;
mod health;
mod kubeconfig;
mod kubernetes_build;
mod lifecycle;
pub mod packages;
mod ports;
mod process;
mod s3;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::prerequisites::Needs;

/// `cargo xtask env ...` subcommands.
#[derive(clap::Subcommand)]
pub enum EnvCommand {
    /// Start (or verify and reuse) the environment and print how to use it.
    Up {
        /// Number of clusters: `mgmt` plus user clusters `c1`, `c2`, ...
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
        clusters: u16,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop the environment's processes and remove its data.
    Down {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Show each process with its pid, port, liveness and health.
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Only build (or find in the cache) kube-apiserver and kube-controller-manager.
    Build,
    /// Only install the Debian packages the control plane, the build and the tests need, and
    /// Azurite (what `cargo xtask test` installs, e.g. the `age` CLI the interoperability tests run).
    Install,
}

/// The environment directory option shared by the subcommands.
#[derive(clap::Args)]
pub struct DirArg {
    /// Environment directory [default: <workspace>/target/local-env].
    #[arg(long, env = "BACKUP_TEST_ENV_DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    /// The directory as an absolute path.
    fn resolve(&self) -> Result<PathBuf> {
        match &self.dir {
            Some(dir) => absolute(dir),
            None => default_dir(),
        }
    }
}

/// The default environment directory: `$BACKUP_TEST_ENV_DIR` if set, else
/// `<workspace>/target/local-env` (absolute).
pub fn default_dir() -> Result<PathBuf> {
    absolute(&backup_localenv::env::env_dir())
}

/// `dir` made absolute with `.` and `..` removed (it need not exist yet).
fn absolute(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut clean = PathBuf::new();
    for part in dir.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Ok(clean)
}

/// `env up` with the default size (3 clusters) in `dir`.
pub fn up_default(dir: &Path) -> Result<()> {
    lifecycle::up(dir, DEFAULT_CLUSTERS)
}

/// `env down` in `dir`: stops our processes and removes the directory.
pub fn down(dir: &Path) -> Result<()> {
    lifecycle::down(dir)
}

/// `$XDG_CACHE_HOME/backup-fleet` or `$HOME/.cache/backup-fleet`: what xtask builds or installs
/// once per machine (Kubernetes, Azurite, Helm's SDK, fresh-check's base image).
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .context("neither XDG_CACHE_HOME nor HOME is set: nowhere to cache builds")?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("backup-fleet"))
}

/// Whether kube-apiserver and kube-controller-manager are in the cache.
pub fn kubernetes_is_built() -> bool {
    matches!(kubernetes_build::cached(), Ok(Some(_)))
}

/// Whether the S3 server's binary is there.
pub fn s3s_fs_is_installed() -> bool {
    s3::find_binary().is_some()
}

/// Whether Azurite's server is there.
pub fn azurite_is_installed() -> bool {
    backup_storage::testing::azurite::find_binary().is_ok()
}

/// Builds kube-apiserver and kube-controller-manager once per machine (see
/// [`kubernetes_build`]), or finds them in the cache.
pub fn ensure_kubernetes_built() -> Result<()> {
    kubernetes_build::ensure_built().map(drop)
}

/// Installs the S3 server with `cargo install` unless it is there.
pub fn ensure_s3s_fs() -> Result<()> {
    s3::ensure_binary().map(drop)
}

/// Installs Azurite with npm unless it is there.
pub fn ensure_azurite() -> Result<()> {
    azurite::ensure_installed().map(drop)
}

impl EnvCommand {
    /// What the subcommand needs on the machine (see [`crate::prerequisites`]).
    pub fn needs(&self) -> Needs {
        match self {
            EnvCommand::Up { .. } => Needs::control_plane(),
            EnvCommand::Down { .. } | EnvCommand::Status { .. } => Needs::nothing(),
            EnvCommand::Build => Needs::debian(packages::CONTROL_PLANE).and(Needs::kubernetes()),
            EnvCommand::Install => Needs::tests(),
        }
    }
}

/// Default number of clusters: `mgmt`, `c1`, `c2`.
const DEFAULT_CLUSTERS: usize = 3;

/// Runs one `env` subcommand.
pub fn run(cmd: EnvCommand) -> Result<()> {
    match cmd {
        EnvCommand::Up { clusters, dir } => lifecycle::up(&dir.resolve()?, usize::from(clusters)),
        EnvCommand::Down { dir } => lifecycle::down(&dir.resolve()?),
        EnvCommand::Status { dir } => lifecycle::status(&dir.resolve()?),
        // `cargo xtask` installed them before running this (see `EnvCommand::needs`).
        EnvCommand::Install => {
            println!("everything `cargo xtask test` needs is installed");
            Ok(())
        }
        EnvCommand::Build => {
            let bins = kubernetes_build::ensure_built()?;
            println!(
                "{}\n{}",
                bins.apiserver.display(),
                bins.controller_manager.display()
            );
            Ok(())
        }
    }
}
