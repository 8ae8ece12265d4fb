//! `DIR/env.json`: the machine-readable description of a running local control plane.
//!
//! `cargo xtask env up` writes it last (so its presence means the environment was complete);
//! the test harness, the demo and the benches read it. This is the only definition of the file,
//! shared by writer and readers so they cannot drift apart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The state file's name inside the environment directory.
pub const STATE_FILE: &str = "env.json";

/// A whole environment: clusters plus the S3 server and Azurite.
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
    /// Azure Blob Storage (Azurite). `None` only in an environment started before Azurite was
    /// part of it; `cargo xtask env up` then adds it without restarting the rest.
    #[serde(default)]
    pub azure: Option<AzureState>,
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
    /// This cluster's own kubeconfig (refers to `ca_file` by path).
    pub kubeconfig: PathBuf,
    /// The same, self-contained: CA embedded as `certificate-authority-data`, token inline, no
    /// file paths; the form a kubeconfig has when kept in a Kubernetes Secret.
    pub inline_kubeconfig: PathBuf,
    /// Its context name, in its own and in the merged kubeconfig.
    pub context: String,
    /// `http://127.0.0.1:<port>` of its etcd.
    pub etcd_endpoint: String,
    /// Ports in use.
    pub ports: Ports,
    /// Its processes: etcd, kube-apiserver, kube-controller-manager.
    pub processes: Vec<ProcessState>,
    /// The API server's audit log (JSON lines, `Metadata` level, our kinds only): who did
    /// what, and as whom (`impersonatedUser`). Empty in an environment made before it had one.
    #[serde(default)]
    pub audit_log: PathBuf,
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
    /// The port it serves on (127.0.0.1).
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

/// Azure Blob Storage: Azurite's blob service with its development account and one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AzureState {
    /// The blob endpoint of Azurite's development account (whose published key the location
    /// options carry), `http://127.0.0.1:<port>/devstoreaccount1`.
    pub endpoint: String,
    /// Container made ready at start.
    pub container: String,
    /// Storage location URL, `az://<container>`.
    pub location: String,
    /// Azurite's data directory.
    pub root: PathBuf,
    /// Shell file exporting the AZURE_STORAGE_* variables object_store reads.
    pub env_file: PathBuf,
    /// The server process (`node` running `azurite-blob`).
    pub process: ProcessState,
}

impl AzureState {
    /// The options of [`AzureState::location`], as a StorageLocation's `config` or
    /// `backupctl --option KEY=VALUE` gives them: account and key, endpoint.
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        backup_storage::testing::azurite::location_options(&self.endpoint)
    }
}

impl EnvState {
    /// Every process of the environment: each cluster's, then the S3 server, then Azurite.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessState> {
        self.clusters
            .iter()
            .flat_map(|c| c.processes.iter())
            .chain(std::iter::once(&self.s3.process))
            .chain(self.azure.as_ref().map(|a| &a.process))
    }

    /// The cluster called `name` (`mgmt`, `c1`, ...).
    pub fn cluster(&self, name: &str) -> Result<&ClusterState> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("the environment has no cluster {name}"))
    }

    /// Reads `dir/env.json`, `None` when absent (no environment was completed in `dir`).
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let state = serde_json::from_str(&text).with_context(|| {
            format!(
                "parsing {} (written by another version? `cargo xtask env up` rewrites it)",
                path.display()
            )
        })?;
        Ok(Some(state))
    }

    /// Writes `<dir>/env.json` atomically, so a reader never sees half of it.
    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_atomically(&self.dir.join(STATE_FILE), &text)
    }
}

impl ClusterState {
    /// The API server's audit events so far (see [`ClusterState::audit_log`]).
    pub fn audit_events(&self) -> Result<Vec<serde_json::Value>> {
        anyhow::ensure!(
            !self.audit_log.as_os_str().is_empty(),
            "the local control plane was made before API servers kept an audit log: \
             `cargo xtask env down && cargo xtask env up`"
        );
        let text = std::fs::read_to_string(&self.audit_log)
            .with_context(|| format!("reading {}", self.audit_log.display()))?;
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .with_context(|| format!("an audit event of {}", self.audit_log.display()))
            })
            .collect()
    }
}

impl S3State {
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

/// Whether `pid` names a live, non-zombie process.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Writes `text` to `path` through a temporary file and a rename, so readers of the
/// environment's files (state, pid files, kubeconfigs) never see them half-written.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(name: &str, port: u16) -> ProcessState {
        ProcessState {
            name: name.into(),
            program: "/usr/bin/true".into(),
            pid: 1,
            pid_file: format!("/env/{name}.pid").into(),
            log: format!("/env/{name}.log").into(),
            port,
            health_url: format!("http://127.0.0.1:{port}/health"),
        }
    }

    #[test]
    fn state_round_trips_and_absence_is_not_an_error() {
        let dir = std::env::temp_dir().join(format!("env-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(EnvState::load(&dir).unwrap().is_none());
        let state = EnvState {
            dir: dir.clone(),
            kubernetes_version: "1.20.2".into(),
            kubeconfig: dir.join("kubeconfig"),
            clusters: vec![ClusterState {
                name: "mgmt".into(),
                role: "management".into(),
                apiserver_url: "https://127.0.0.1:6443".into(),
                token: "t".into(),
                ca_file: dir.join("pki/ca.crt"),
                kubeconfig: dir.join("mgmt.kubeconfig"),
                inline_kubeconfig: dir.join("mgmt.inline.kubeconfig"),
                context: "mgmt".into(),
                etcd_endpoint: "http://127.0.0.1:2379".into(),
                ports: Ports {
                    etcd_client: 2379,
                    etcd_peer: 2380,
                    apiserver: 6443,
                    controller_manager: 10257,
                },
                processes: vec![process("mgmt/etcd", 2379)],
                audit_log: dir.join("mgmt/audit.log"),
            }],
            s3: S3State {
                endpoint: "http://127.0.0.1:9000".into(),
                access_key_id: "a".into(),
                secret_access_key: "s".into(),
                region: "us-east-1".into(),
                bucket: "backups".into(),
                location: "s3://backups".into(),
                root: dir.join("s3"),
                env_file: dir.join("s3.env"),
                process: process("s3s-fs", 9000),
            },
            azure: Some(AzureState {
                endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
                container: "backups".into(),
                location: "az://backups".into(),
                root: dir.join("azurite"),
                env_file: dir.join("azure.env"),
                process: process("azurite", 10000),
            }),
        };
        state.save().unwrap();
        let loaded = EnvState::load(&dir).unwrap().unwrap();
        assert_eq!(loaded.cluster("mgmt").unwrap().ports.apiserver, 6443);
        assert!(loaded.cluster("c9").is_err());
        let names: Vec<_> = loaded.processes().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["mgmt/etcd", "s3s-fs", "azurite"]);
        let options = loaded.azure.as_ref().unwrap().options();
        assert_eq!(
            options["endpoint"],
            "http://127.0.0.1:10000/devstoreaccount1"
        );

        // A state written before Azurite was part of the environment still loads.
        let mut old: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("azure");
        std::fs::write(dir.join(STATE_FILE), old.to_string()).unwrap();
        let loaded = EnvState::load(&dir).unwrap().unwrap();
        assert!(loaded.azure.is_none());
        assert_eq!(loaded.processes().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
