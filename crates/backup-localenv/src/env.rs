//! Where the local control plane lives and how to reach one of its clusters.
//!
//! Its directory is `$BACKUP_TEST_ENV_DIR` or `<workspace>/target/local-env`, for `cargo xtask env`
//! and the tests alike.

use std::path::{Path, PathBuf};

use anyhow::Result;
use backup_kube::kubeconfig;
use kube::Client;

use crate::env_state::ClusterState;

/// Environment variable overriding the environment directory.
pub const DIR_VAR: &str = "BACKUP_TEST_ENV_DIR";

/// The environment directory: `$BACKUP_TEST_ENV_DIR` or `<workspace>/target/local-env`.
pub fn env_dir() -> PathBuf {
    match std::env::var_os(DIR_VAR).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target/local-env"),
    }
}

/// The workspace root (two levels above this crate's manifest directory), whatever the current
/// directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// A kube client for `cluster`, from its own kubeconfig file and context.
pub async fn client_for(cluster: &ClusterState) -> Result<Client> {
    Ok(kubeconfig::client_from_file(&cluster.kubeconfig, Some(&cluster.context)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
