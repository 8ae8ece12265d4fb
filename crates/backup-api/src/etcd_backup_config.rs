//! `EtcdBackupConfig` (KKP's shape): snapshots of one ManagedCluster's etcd, once or on a
//! schedule, rotated to the newest `keep`.
//!
//! Snapshots are named `<config>-<YYYYMMDDhhmmss>` (the firing, UTC; the config's own name
//! for a one-time snapshot) and stored where `backupctl etcd snapshot --project <namespace>
//! --cluster <cluster>` stores them, so `backupctl etcd list|restore` work on them.

use backup_core::{KeepCount, Schedule, validate_dns1123_label, validate_dns1123_subdomain};
use jiff::tz::TimeZone;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::invalid::InvalidField;
use super::recorded_runs::RecordedRunsStatus;

/// Snapshots kept when the spec does not say (KKP's default).
pub const DEFAULT_KEEP: u32 = 20;

/// Which etcd, when, how many, where (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "EtcdBackupConfig",
    plural = "etcdbackupconfigs",
    shortname = "ebc",
    namespaced,
    status = "RecordedRunsStatus",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Keep","type":"integer","jsonPath":".spec.keep"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupConfigSpec {
    /// The ManagedCluster (of this namespace) whose etcd is snapshotted; its `spec.etcd` says
    /// how to reach it.
    pub cluster: String,
    /// When: cron, `@daily`-style nicknames or `@every 20m`; omitted: one snapshot, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How many snapshots to keep (1..=50, default 20); older ones are deleted after each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<i64>,
    /// The StorageLocation (of this namespace); the default location when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
}

/// An EtcdBackupConfig spec, checked.
#[derive(Debug, Clone)]
pub struct ValidEtcdBackupConfig {
    /// The ManagedCluster.
    pub cluster: String,
    /// The schedule (UTC); `None` for one snapshot.
    pub schedule: Option<(Schedule, TimeZone)>,
    /// Snapshots kept.
    pub keep: KeepCount,
    /// The location; `None` = the default.
    pub storage_location: Option<String>,
}

impl EtcdBackupConfigSpec {
    /// Checks every field; `name` is the object's name, the base of the snapshots' names.
    pub fn validate(&self, name: &str) -> Result<ValidEtcdBackupConfig, InvalidField> {
        validate_dns1123_label(name).map_err(|e| {
            InvalidField::new(
                "metadata.name",
                format!("{name:?}: {e} (snapshots are named after it)"),
            )
        })?;
        validate_dns1123_subdomain(&self.cluster)
            .map_err(|e| InvalidField::new("spec.cluster", format!("{:?}: {e}", self.cluster)))?;
        let schedule = match &self.schedule {
            None => None,
            Some(text) => Some((
                Schedule::parse(text)
                    .map_err(|e| InvalidField::new("spec.schedule", e.to_string()))?,
                TimeZone::UTC,
            )),
        };
        let keep = match self.keep {
            None => KeepCount::new(DEFAULT_KEEP),
            Some(n) => KeepCount::from_spec(n),
        }
        .map_err(|e| InvalidField::new("spec.keep", e.to_string()))?;
        if let Some(location) = &self.storage_location {
            validate_dns1123_subdomain(location).map_err(|e| {
                InvalidField::new("spec.storageLocation", format!("{location:?}: {e}"))
            })?;
        }
        Ok(ValidEtcdBackupConfig {
            cluster: self.cluster.clone(),
            schedule,
            keep,
            storage_location: self.storage_location.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> EtcdBackupConfigSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn kkps_shape_validates_with_its_defaults() {
        let v = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 20m", "keep": 20}))
            .validate("c1-etcd")
            .unwrap();
        assert_eq!(v.keep.get(), 20);
        assert_eq!(v.schedule.unwrap().0.as_str(), "@every 20m");
        let one_shot = spec(serde_json::json!({"cluster": "c1"}))
            .validate("now")
            .unwrap();
        assert!(one_shot.schedule.is_none());
        assert_eq!(one_shot.keep.get(), DEFAULT_KEEP);
    }

    #[test]
    fn every_bad_field_is_named() {
        for (json, name, field) in [
            (
                serde_json::json!({"cluster": "c1", "keep": 0}),
                "e",
                "spec.keep",
            ),
            (
                serde_json::json!({"cluster": "c1", "keep": 51}),
                "e",
                "spec.keep",
            ),
            (
                serde_json::json!({"cluster": "c1", "keep": -1}),
                "e",
                "spec.keep",
            ),
            (
                serde_json::json!({"cluster": "c1", "schedule": "every day"}),
                "e",
                "spec.schedule",
            ),
            (
                serde_json::json!({"cluster": "Cluster 1"}),
                "e",
                "spec.cluster",
            ),
            (
                serde_json::json!({"cluster": "c1", "storageLocation": "a/b"}),
                "e",
                "spec.storageLocation",
            ),
            (
                serde_json::json!({"cluster": "c1"}),
                "has.dots",
                "metadata.name",
            ),
        ] {
            let e = spec(json.clone()).validate(name).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
        }
    }
}
