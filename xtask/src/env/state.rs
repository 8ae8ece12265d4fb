//! `DIR/env.json`: the machine-readable description of a running environment (what the test
//! harness and the demo read), written last by `env up`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The state file's name inside the environment directory.
pub const STATE_FILE: &str = "env.json";

/// A whole environment: clusters plus the S3 server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvState {
    /// The environment directory (absolute).
    pub dir: PathBuf,
    /// Kubernetes version of the apiservers.
    pub kubernetes_version: String,
    /// Merged kubeconfig with one context per cluster (current context: the management one).
    pub kubeconfig: PathBuf,
    /// The clusters; the first is the management cluster.
    pub clusters: Vec<ClusterState>,
    /// The S3-compatible server.
    pub s3: S3State,
}

/// One cluster: etcd, kube-apiserver, kube-controller-manager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// `mgmt`, `c1`, `c2`, ...
    pub name: String,
    /// `management` or `user`.
    pub role: String,
    /// `https://127.0.0.1:<port>`.
    pub apiserver_url: String,
    /// Static bearer token of `admin` (group `system:masters`).
    pub token: String,
    /// CA certificate that verifies the apiserver.
    pub ca_file: PathBuf,
    /// This cluster's own kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its context name in the merged kubeconfig.
    pub context: String,
    /// `http://127.0.0.1:<port>` of its etcd.
    pub etcd_endpoint: String,
    /// Ports in use.
    pub ports: Ports,
    /// Its processes: etcd, kube-apiserver, kube-controller-manager.
    pub processes: Vec<ProcessState>,
}

/// The ports of one cluster, all on 127.0.0.1.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ports {
    /// etcd client port.
    pub etcd_client: u16,
    /// etcd peer port.
    pub etcd_peer: u16,
    /// kube-apiserver secure port.
    pub apiserver: u16,
    /// kube-controller-manager secure (health) port.
    pub controller_manager: u16,
}

/// One started process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessState {
    /// e.g. `c1/kube-apiserver`.
    pub name: String,
    /// Executable path (used to check `/proc/<pid>/cmdline` before signalling).
    pub program: PathBuf,
    /// Its pid at start.
    pub pid: u32,
    /// Its pid file.
    pub pid_file: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// The port it serves on.
    pub port: u16,
    /// URL probed for health.
    pub health_url: String,
}

/// The S3-compatible server (s3s-fs) and its bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3State {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Region to sign requests with.
    pub region: String,
    /// Bucket made ready at start.
    pub bucket: String,
    /// Storage location URL, `s3://<bucket>`.
    pub location: String,
    /// Root directory holding the buckets.
    pub root: PathBuf,
    /// Shell file exporting the AWS_* variables.
    pub env_file: PathBuf,
    /// The server process.
    pub process: ProcessState,
}

impl EnvState {
    /// Every process of the environment.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessState> {
        self.clusters
            .iter()
            .flat_map(|c| c.processes.iter())
            .chain(std::iter::once(&self.s3.process))
    }

    /// Reads `dir/env.json`, `None` when absent.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(STATE_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let state = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} (remove it or run env down)", path.display()))?;
        Ok(Some(state))
    }

    /// Writes `dir/env.json` atomically.
    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        super::process::write_atomically(&self.dir.join(STATE_FILE), &text)
    }
}
