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
    absolute(&::tests::env::env_dir())
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

/// Installs what `cargo xtask test` needs: the Debian packages (see [`packages`]) and Azurite.
pub fn ensure_test_prerequisites() -> Result<()> {
    packages::ensure_test_prerequisites()?;
    azurite::ensure_installed()?;
    Ok(())
}

/// Default number of clusters: `mgmt`, `c1`, `c2`.
const DEFAULT_CLUSTERS: usize = 3;

/// Runs one `env` subcommand.
pub fn run(cmd: EnvCommand) -> Result<()> {
    match cmd {
        EnvCommand::Up { clusters, dir } => lifecycle::up(&dir.resolve()?, usize::from(clusters)),
        EnvCommand::Down { dir } => lifecycle::down(&dir.resolve()?),
        EnvCommand::Status { dir } => lifecycle::status(&dir.resolve()?),
        EnvCommand::Install => ensure_test_prerequisites(),
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
