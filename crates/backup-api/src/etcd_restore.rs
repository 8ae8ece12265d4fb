//! `EtcdRestore` (KKP's shape): restore one stored etcd snapshot of a ManagedCluster.
//!
//! As KKP's etcd launcher does it, the restore is carried out next to the etcd it replaces, by
//! `backupctl etcd agent` running there; the controller only validates the object (the cluster
//! is of this project, the snapshot exists and has its checksum recorded) in its `Ready`
//! condition. The agent takes validated restores of its cluster and reports `phase`:
//! `Started` → `Restoring` → `Completed` | `Failed`, with a message. The two write different
//! status fields, each with its own field manager.

use backup_core::validate_dns1123_subdomain;
use jiff::Timestamp;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::invalid::InvalidField;
use super::schema::optional_date_time;
use super::status::Condition;

/// Which snapshot, of which cluster, from where (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "EtcdRestore",
    plural = "etcdrestores",
    shortname = "ers",
    namespaced,
    status = "EtcdRestoreStatus",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".spec.backupName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdRestoreSpec {
    /// The ManagedCluster (of this namespace) whose etcd is restored.
    pub cluster: String,
    /// The snapshot (as `backupctl etcd list` and EtcdBackupConfig's `lastBackups` name it).
    pub backup_name: String,
    /// The StorageLocation (of this namespace) holding it; the default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
}

/// Where the agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EtcdRestorePhase {
    /// The agent took it.
    Started,
    /// The snapshot is being downloaded, verified and turned into a member directory.
    Restoring,
    /// The data directory holds the restored member.
    Completed,
    /// It failed; `message` says why. The data directory was left as it was.
    Failed,
}

/// The controller's validation and the agent's progress (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdRestoreStatus {
    /// The agent's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EtcdRestorePhase>,
    /// What happened, from the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub start_time: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub completion_time: Option<Timestamp>,
    /// The generation the controller validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: validated by the controller (its message says what to fix otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl EtcdRestoreSpec {
    /// Checks the names.
    pub fn validate(&self) -> Result<(), InvalidField> {
        validate_dns1123_subdomain(&self.cluster)
            .map_err(|e| InvalidField::new("spec.cluster", format!("{:?}: {e}", self.cluster)))?;
        validate_dns1123_subdomain(&self.backup_name).map_err(|e| {
            InvalidField::new("spec.backupName", format!("{:?}: {e}", self.backup_name))
        })?;
        if let Some(location) = &self.storage_location {
            validate_dns1123_subdomain(location).map_err(|e| {
                InvalidField::new("spec.storageLocation", format!("{location:?}: {e}"))
            })?;
        }
        Ok(())
    }
}

/// Whether the controller validated this generation of the restore (what the agent waits for).
pub fn is_validated(restore: &EtcdRestore) -> bool {
    let Some(status) = &restore.status else {
        return false;
    };
    status.observed_generation == restore.metadata.generation
        && super::status::find(&status.conditions, super::cluster_restore::READY)
            .is_some_and(Condition::is_true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let ok = EtcdRestoreSpec {
            cluster: "c1".into(),
            backup_name: "c1-etcd-20261130100000".into(),
            storage_location: None,
        };
        ok.validate().unwrap();
        for (spec, field) in [
            (
                EtcdRestoreSpec {
                    cluster: "project-b/c1".into(),
                    ..ok.clone()
                },
                "spec.cluster",
            ),
            (
                EtcdRestoreSpec {
                    backup_name: "../x".into(),
                    ..ok.clone()
                },
                "spec.backupName",
            ),
            (
                EtcdRestoreSpec {
                    storage_location: Some("A".into()),
                    ..ok.clone()
                },
                "spec.storageLocation",
            ),
        ] {
            assert_eq!(spec.validate().unwrap_err().field, field);
        }
    }
}
