//! Our API, `backupfleet.dev/v1alpha1`: one file per kind, shared status conditions, and
//! [`crds`] listing every CustomResourceDefinition.
//!
//! Every kind is namespaced and the namespace is the project: an object only ever refers to
//! objects of its own namespace, and a project's backups live under
//! `<location prefix>/<namespace>/<cluster>/` in storage.

pub mod cluster_backup;
pub mod cluster_migration;
pub mod cluster_restore;
pub mod etcd_backup_config;
pub mod etcd_restore;
pub mod invalid;
pub mod managed_cluster;
pub mod management_backup;
pub mod recorded_runs;
pub mod restore_drill;
mod schema;
pub mod status;
pub mod storage_location;

pub use cluster_backup::{
    BackupTemplate, ClusterBackup, ClusterBackupSpec, ClusterBackupStatus, ClusterRuns,
    ClusterSelection, DeletePolicy, FleetPhase, Retention, RunStatus, Selection,
    ValidClusterBackup,
};
pub use cluster_migration::{
    ClusterMigration, ClusterMigrationSpec, ClusterMigrationStatus, MigrationStage, MigrationTarget,
};
pub use cluster_restore::{
    ClusterRestore, ClusterRestoreResult, ClusterRestoreSpec, ClusterRestoreStatus, RestorePlan,
    RestoreSource,
};
pub use etcd_backup_config::{EtcdBackupConfig, EtcdBackupConfigSpec};
pub use etcd_restore::{EtcdRestore, EtcdRestorePhase, EtcdRestoreSpec, EtcdRestoreStatus};
pub use invalid::InvalidField;
pub use managed_cluster::{
    EngineChoice, EngineKind, EtcdAccess, ManagedCluster, ManagedClusterSpec, ManagedClusterStatus,
    SecretName,
};
pub use management_backup::{
    ManagementBackup, ManagementBackupSpec, ManagementBackupStatus, ValidManagementBackup,
};
pub use recorded_runs::{BackupRecord, RecordedRunsStatus};
pub use restore_drill::{RestoreDrill, RestoreDrillSpec, RestoreDrillStatus, ValidRestoreDrill};
pub use status::{Condition, ConditionStatus, merge_conditions, set_condition};
pub use storage_location::{
    LocationPhase, ObjectStorage, StorageLocation, StorageLocationSpec, StorageLocationStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

/// The annotation that runs a ClusterBackup, EtcdBackupConfig, ManagementBackup or RestoreDrill once, now, outside its
/// schedule: each new value (a token) runs once, and the last one served is recorded in
/// `status.lastRunNowToken`. Upgrade tools and the dashboard use it.
pub const RUN_NOW_ANNOTATION: &str = "backupfleet.dev/run-now";

/// The label the dashboard puts on the dry runs it makes to show a restore's plan: the
/// controller deletes a finished dry run with it an hour after it finished (the page's
/// scratch; a person clicking "Restore" fifty times must not leave fifty objects). It does
/// nothing on a restore that is not a dry run.
pub const DASHBOARD_PLAN_LABEL: &str = "backupfleet.dev/dashboard-plan";

/// Our API group.
pub const GROUP: &str = "backupfleet.dev";
/// Its version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD of the API, in the order they are best installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        StorageLocation::crd(),
        ManagedCluster::crd(),
        ClusterBackup::crd(),
        ClusterRestore::crd(),
        ClusterMigration::crd(),
        EtcdBackupConfig::crd(),
        EtcdRestore::crd(),
        ManagementBackup::crd(),
        RestoreDrill::crd(),
    ]
}

/// Every CRD as one multi-document YAML stream (what `backup-controller crds` prints).
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_is_namespaced_in_our_group_with_a_status_subresource_and_columns() {
        let crds = crds();
        assert_eq!(crds.len(), 9);
        for crd in &crds {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Namespaced");
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, VERSION);
            assert!(version.subresources.as_ref().unwrap().status.is_some());
            assert!(version.additional_printer_columns.as_ref().unwrap().len() >= 3);
            assert!(
                crd.spec
                    .names
                    .short_names
                    .as_ref()
                    .is_some_and(|s| !s.is_empty())
            );
        }
    }

    #[test]
    fn the_yaml_stream_parses_back_into_the_same_crds() {
        let yaml = crds_yaml().unwrap();
        let parsed: Vec<CustomResourceDefinition> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect();
        assert_eq!(parsed, crds());
    }

    #[test]
    fn schemas_reject_at_admission_what_the_types_cannot_read() {
        // Numbers the Rust types hold unsigned must be unsigned in the schema, and enums must
        // list their values, or the apiserver would accept objects the controller cannot read.
        let crd = serde_json::to_value(ClusterBackup::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let gfs = &spec["properties"]["retention"]["properties"]["gfs"]["properties"];
        assert_eq!(gfs["daily"]["minimum"].as_f64(), Some(0.0), "{gfs}");
        let policy = &spec["properties"]["deletePolicy"];
        assert!(policy.to_string().contains("Delete"), "{policy}");
        let operator = spec.to_string();
        assert!(operator.contains("DoesNotExist"), "{operator}");
    }
}
