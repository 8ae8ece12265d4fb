//! The shared local control plane for tests: started once per machine (or reused when up) by
//! `cargo xtask env up`, described by its `env.json`, handed to tests as typed handles.
//!
//! Several test processes (nextest) and threads (`cargo test`) may ask at once: a file lock
//! (`<dir>.harness.lock`) lets one of them check the environment and, if any of its processes is
//! gone, run `cargo xtask env up --dir <dir>` (which repairs or starts it); the others wait and
//! then reuse it. The directory is `$BACKUP_TEST_ENV_DIR` or `<workspace>/target/local-env`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use kube::Client;

use crate::env_state::{AzureState, ClusterState, EnvState, S3State, pid_alive};

// Finding the directory and reaching a cluster are shared with xtask (`backup-localenv`).
pub(crate) use backup_localenv::env::workspace_root;
pub use backup_localenv::env::{DIR_VAR, client_for, env_dir};

/// The environment a test runs against.
#[derive(Debug)]
pub struct TestEnv {
    /// Everything `env.json` says.
    pub state: EnvState,
}

/// The environment, started or reused on first use in this process; later calls are free.
pub fn shared() -> Result<&'static TestEnv> {
    static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();
    ENV.get_or_init(|| ensure_up(&env_dir()).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("the local control plane is not available: {e}"))
}

/// Reuses the environment in `dir` when all its processes run, else runs `cargo xtask env up`.
pub fn ensure_up(dir: &Path) -> Result<TestEnv> {
    let _lock = lock(dir)?;
    if let Some(state) = EnvState::load(dir)?
        && all_running(&state)
    {
        return Ok(TestEnv { state });
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "env",
            "up",
            "--dir",
        ])
        .arg(dir)
        .current_dir(workspace_root())
        .output()
        .context("running `cargo xtask env up`")?;
    if !out.status.success() {
        bail!(
            "`cargo xtask env up --dir {}` failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let state = EnvState::load(dir)?.context("env up succeeded but wrote no env.json")?;
    Ok(TestEnv { state })
}

/// Whether every recorded process is alive (a quick check; `env up` does the full one), Azurite
/// included: an environment from before Azurite was part of it goes through `env up`, which adds it.
pub fn all_running(state: &EnvState) -> bool {
    state.azure.is_some() && state.processes().all(|p| pid_alive(p.pid))
}

/// An exclusive lock on `<dir>.harness.lock`, so one test process at a time checks or starts
/// the environment.
fn lock(dir: &Path) -> Result<crate::lock::FileLock> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::lock::FileLock::acquire(&dir.with_file_name(format!("{name}.harness.lock")), "")
}

impl TestEnv {
    /// The cluster called `name` (`mgmt`, `c1`, ...).
    pub fn cluster(&self, name: &str) -> Result<&ClusterState> {
        self.state.cluster(name)
    }

    /// The management cluster.
    pub fn management(&self) -> Result<&ClusterState> {
        self.state
            .clusters
            .first()
            .context("the environment has no clusters")
    }

    /// The user clusters (all but the management cluster).
    pub fn user_clusters(&self) -> &[ClusterState] {
        self.state.clusters.get(1..).unwrap_or_default()
    }

    /// A kube client for cluster `name`, built from its kubeconfig (TLS verified with our CA).
    /// Make one per test: a client belongs to the tokio runtime that created it.
    pub async fn client(&self, name: &str) -> Result<Client> {
        client_for(self.cluster(name)?).await
    }

    /// The S3 server, bucket and credentials.
    pub fn s3(&self) -> &S3State {
        &self.state.s3
    }

    /// Azure Blob Storage (Azurite), its container and location options.
    pub fn azure(&self) -> Result<&AzureState> {
        self.state
            .azure
            .as_ref()
            .context("the environment has no Azurite; `cargo xtask env up` adds it")
    }

    /// The etcd endpoint of cluster `name`.
    pub fn etcd_endpoint(&self, name: &str) -> Result<&str> {
        Ok(&self.cluster(name)?.etcd_endpoint)
    }
}
