//! Kubeconfig files: one per cluster (`DIR/<cluster>.kubeconfig`) and a merged one
//! (`DIR/kubeconfig`) with a context per cluster, which refer to our CA by path; and one
//! self-contained file per cluster (`DIR/<cluster>.inline.kubeconfig`, CA embedded, no paths), the
//! form a kubeconfig takes in a Kubernetes Secret. All verify the apiserver with our CA and
//! authenticate with the static admin token.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
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

/// How a kubeconfig gives the CA certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaForm {
    /// `certificate-authority: <path>`: for kubectl and our processes on this machine.
    Path,
    /// `certificate-authority-data: <base64 PEM>`: self-contained, fit for a Secret.
    Embedded,
}

/// The `cluster` stanza of `entry`.
fn cluster(entry: &Entry<'_>, ca: CaForm) -> Result<Value> {
    Ok(match ca {
        CaForm::Path => json!({
            "server": entry.server,
            "certificate-authority": entry.ca_file,
        }),
        CaForm::Embedded => {
            let pem = std::fs::read(entry.ca_file)
                .with_context(|| format!("reading {}", entry.ca_file.display()))?;
            json!({
                "server": entry.server,
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(pem),
            })
        }
    })
}

/// The kubeconfig document for `entries`, with `current` as current context.
fn document(entries: &[Entry<'_>], current: &str, ca: CaForm) -> Result<Value> {
    let clusters = entries
        .iter()
        .map(|e| Ok(json!({"name": e.name, "cluster": cluster(e, ca)?})))
        .collect::<Result<Vec<Value>>>()?;
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
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": current,
        "preferences": {},
    }))
}

/// Writes a kubeconfig for `entries` to `path`, referring to the CA by path, with `current` as
/// current context.
pub fn write(path: &Path, entries: &[Entry<'_>], current: &str) -> Result<()> {
    write_document(path, &document(entries, current, CaForm::Path)?)
}

/// Writes a self-contained kubeconfig for `entry` to `path`: the CA embedded, the token inline,
/// no file paths, so its bytes work anywhere (e.g. from a Secret).
pub fn write_inline(path: &Path, entry: &Entry<'_>) -> Result<()> {
    write_document(
        path,
        &document(std::slice::from_ref(entry), entry.name, CaForm::Embedded)?,
    )
}

/// Writes `document` as YAML to `path` (mode 0600: it holds a token).
fn write_document(path: &Path, document: &Value) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let yaml = serde_yaml_ng::to_string(document)?;
    backup_localenv::env_state::write_atomically(path, &yaml)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
