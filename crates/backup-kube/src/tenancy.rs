//! What the platform lends a project: the controller's tenancy flags, in one place.
//!
//! Every input a project writes is hostile, so nothing it names may use what the controller
//! holds that the project does not: its files, its cloud identity, its network position. The
//! platform widens this only by its own flags: a root for `file` locations, namespaces that may
//! use the controller's identity, and the ranges of its networks projects may not reach (on top
//! of link-local and the metadata services, which no flag opens).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use backup_net::AddressPolicy;

/// The platform's decisions about projects.
#[derive(Clone, Debug, Default)]
pub struct TenantPolicy {
    /// Checked on every connection made for a project: store endpoints, kubeconfig servers,
    /// etcd endpoints.
    pub addresses: Arc<AddressPolicy>,
    /// Where `file` StorageLocations must lie; `None` refuses them.
    pub file_root: Option<PathBuf>,
    /// Namespaces whose StorageLocations without a credential Secret may use the controller's
    /// own identity (environment, instance metadata, workload identity). Empty by default.
    pub lend_identity_to: BTreeSet<String>,
}

impl TenantPolicy {
    /// How a StorageLocation of `namespace` is opened.
    pub fn storage(&self, namespace: &str) -> backup_storage::Tenancy {
        backup_storage::Tenancy {
            addresses: Arc::clone(&self.addresses),
            file_root: self.file_root.clone(),
            lend_identity: self.lend_identity_to.contains(namespace),
        }
    }
}

/// What the platform lends projects (see the README's threat model). By default nothing: no
/// `file` locations, no identity, and link-local and metadata addresses refused.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TenancyArgs {
    /// The directory `file` StorageLocations must lie under (their bucket is an absolute
    /// directory inside it; `..` and symlinks out of it are refused). Without it, `file`
    /// locations are refused: a project would otherwise write the controller's filesystem.
    #[arg(long)]
    pub file_root: Option<PathBuf>,
    /// Address ranges no connection made for a project may reach, comma-separated CIDRs, on top
    /// of link-local (169.254.0.0/16, fe80::/10) and the metadata services, which are always
    /// refused. Give the platform's own networks (nodes, pods, services) and loopback; the
    /// Helm chart adds loopback by default.
    #[arg(long, value_delimiter = ',', value_parser = cidr)]
    pub deny_cidrs: Vec<ipnet::IpNet>,
    /// Namespaces whose StorageLocations without a credential Secret may use the controller's
    /// own cloud identity (environment, instance metadata, workload identity), comma-separated.
    /// Empty by default: elsewhere such a location is refused (`CredentialRequired`).
    #[arg(long, value_delimiter = ',')]
    pub lend_identity_to: Vec<String>,
}

impl TenancyArgs {
    /// The policy the flags describe.
    pub fn policy(self) -> TenantPolicy {
        TenantPolicy {
            addresses: Arc::new(AddressPolicy::with_denied(self.deny_cidrs)),
            file_root: self.file_root,
            lend_identity_to: self.lend_identity_to.into_iter().collect(),
        }
    }
}

/// One CIDR of `--deny-cidrs`.
fn cidr(text: &str) -> Result<ipnet::IpNet, String> {
    match AddressPolicy::parse_cidrs(text) {
        Ok(mut cidrs) if cidrs.len() == 1 => Ok(cidrs.remove(0)),
        Ok(_) => Err(format!("`{text}` is not one CIDR range")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_lent_only_to_the_named_namespaces() {
        let policy = TenantPolicy {
            lend_identity_to: ["platform".to_string()].into(),
            ..TenantPolicy::default()
        };
        assert!(policy.storage("platform").lend_identity);
        assert!(!policy.storage("project-a").lend_identity);
        assert!(!TenantPolicy::default().storage("platform").lend_identity);
        assert!(TenantPolicy::default().storage("x").file_root.is_none());
    }
}
