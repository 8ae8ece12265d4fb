//! The shared local control plane for tests: started once per machine (or reused when up) by
//! `cargo xtask env up`, described by its `env.json`, handed to tests as typed handles.
//!
//! Several test processes (nextest) and threads (`cargo test`) may ask at once: a file lock
//! (`<dir>.harness.lock`) lets one of them check the environment and, if any of its processes is
//! gone, run `cargo xtask env up --dir <dir>` (which repairs or starts it); the others wait and
//! then reuse it. The directory is `$BACKUP_TEST_ENV_DIR` or `<workspace>/target/local-env`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;

/// Environment variable overriding the environment directory.
pub const DIR_VAR: &str = "BACKUP_TEST_ENV_DIR";

/// `env.json` as written by `cargo xtask env up`.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvState {
    /// The environment directory.
    pub dir: PathBuf,
    /// Kubernetes version of the apiservers.
    pub kubernetes_version: String,
    /// Merged kubeconfig (one context per cluster).
    pub kubeconfig: PathBuf,
    /// The clusters; the first is the management cluster.
    pub clusters: Vec<ClusterInfo>,
    /// The S3 server.
    pub s3: S3Info,
}

/// One cluster of the environment.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterInfo {
    /// `mgmt`, `c1`, `c2`, ...
    pub name: String,
    /// `management` or `user`.
    pub role: String,
    /// `https://127.0.0.1:<port>`.
    pub apiserver_url: String,
    /// Admin bearer token (`system:masters`).
    pub token: String,
    /// CA certificate verifying the apiserver.
    pub ca_file: PathBuf,
    /// The cluster's own kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its context name.
    pub context: String,
    /// `http://127.0.0.1:<port>` of its etcd.
    pub etcd_endpoint: String,
    /// Its processes.
    pub processes: Vec<ProcessInfo>,
}

/// One process of the environment.
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessInfo {
    /// e.g. `c1/kube-apiserver`.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The S3-compatible server and its ready bucket.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Info {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Signing region.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// Storage location URL (`s3://<bucket>`).
    pub location: String,
    /// Directory holding the buckets.
    pub root: PathBuf,
    /// Shell file exporting the AWS_* variables.
    pub env_file: PathBuf,
    /// The server process.
    pub process: ProcessInfo,
}

impl S3Info {
    /// The `AWS_*` variables a client needs (endpoint, credentials, region, plain HTTP allowed).
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

/// The environment a test runs against.
#[derive(Debug)]
pub struct TestEnv {
    /// Everything `env.json` says.
    pub state: EnvState,
}

/// The environment directory: `$BACKUP_TEST_ENV_DIR` or `<workspace>/target/local-env`.
pub fn env_dir() -> PathBuf {
    match std::env::var_os(DIR_VAR).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target/local-env"),
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
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
    if let Some(state) = load(dir)?
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
    let state = load(dir)?.context("env up succeeded but wrote no env.json")?;
    Ok(TestEnv { state })
}

/// Reads `dir/env.json`, `None` when absent.
pub fn load(dir: &Path) -> Result<Option<EnvState>> {
    let path = dir.join("env.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("parsing {}", path.display()))
}

/// Whether every recorded process is alive (a quick check; `env up` does the full one).
pub fn all_running(state: &EnvState) -> bool {
    state
        .clusters
        .iter()
        .flat_map(|c| c.processes.iter())
        .chain(std::iter::once(&state.s3.process))
        .all(|p| pid_alive(p.pid))
}

/// Whether `pid` names a live, non-zombie process.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// An exclusive `flock` on `<dir>.harness.lock`, held until dropped.
struct HarnessLock {
    _file: std::fs::File,
}

fn lock(dir: &Path) -> Result<HarnessLock> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.with_file_name(format!("{name}.harness.lock"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    flock_exclusive(&file).context("locking the test environment")?;
    Ok(HarnessLock { _file: file })
}

/// Blocks until this process holds `flock(2)`'s exclusive lock on `file`.
#[allow(unsafe_code)]
fn flock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: the descriptor is valid and owned by `file`, borrowed for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl TestEnv {
    /// The cluster called `name` (`mgmt`, `c1`, ...).
    pub fn cluster(&self, name: &str) -> Result<&ClusterInfo> {
        self.state
            .clusters
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("the environment has no cluster {name}"))
    }

    /// The management cluster.
    pub fn management(&self) -> Result<&ClusterInfo> {
        self.state
            .clusters
            .first()
            .context("the environment has no clusters")
    }

    /// The user clusters (all but the management cluster).
    pub fn user_clusters(&self) -> &[ClusterInfo] {
        self.state.clusters.get(1..).unwrap_or_default()
    }

    /// A kube client for cluster `name`, built from its kubeconfig (TLS verified with our CA).
    /// Make one per test: a client belongs to the tokio runtime that created it.
    pub async fn client(&self, name: &str) -> Result<Client> {
        client_for(self.cluster(name)?).await
    }

    /// The S3 server, bucket and credentials.
    pub fn s3(&self) -> &S3Info {
        &self.state.s3
    }

    /// The etcd endpoint of cluster `name`.
    pub fn etcd_endpoint(&self, name: &str) -> Result<&str> {
        Ok(&self.cluster(name)?.etcd_endpoint)
    }
}

/// A kube client for `cluster`.
pub async fn client_for(cluster: &ClusterInfo) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig)
        .with_context(|| format!("reading {}", cluster.kubeconfig.display()))?;
    let options = KubeConfigOptions {
        context: Some(cluster.context.clone()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("loading {}", cluster.kubeconfig.display()))?;
    Client::try_from(config).context("building a kube client")
}
