//! Kubeconfig files: one per cluster (`DIR/<cluster>.kubeconfig`) and a merged one
//! (`DIR/kubeconfig`) with a context per cluster. They verify the apiserver with our CA and
//! authenticate with the static admin token.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

/// What a kubeconfig needs to know about one cluster.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Cluster, user-prefix and context name.
    pub name: &'a str,
    /// `https://127.0.0.1:<port>`.
    pub server: &'a str,
    /// CA certificate file.
    pub ca_file: &'a Path,
    /// Bearer token.
    pub token: &'a str,
}

/// The kubeconfig document for `entries`, with `current` as current context.
fn document(entries: &[Entry<'_>], current: &str) -> Value {
    let clusters: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"name": e.name, "cluster": {
                "server": e.server,
                "certificate-authority": e.ca_file,
            }})
        })
        .collect();
    let users: Vec<Value> = entries
        .iter()
        .map(|e| json!({"name": format!("{}-admin", e.name), "user": {"token": e.token}}))
        .collect();
    let contexts: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"name": e.name, "context": {
                "cluster": e.name,
                "user": format!("{}-admin", e.name),
                "namespace": "default",
            }})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": current,
        "preferences": {},
    })
}

/// Writes a kubeconfig for `entries` to `path` (mode 0600: it holds tokens).
pub fn write(path: &Path, entries: &[Entry<'_>], current: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let yaml = serde_yaml_ng::to_string(&document(entries, current))?;
    tests::env_state::write_atomically(path, &yaml)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
