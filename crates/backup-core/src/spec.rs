//! What users ask for: backups, schedules and restores.
//!
//! These are engine-neutral: the Velero engine translates them into `velero.io/v1` objects and
//! the direct engine executes them itself. Field names follow Velero's camelCase JSON so specs
//! read the same in our CRDs as in Velero's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Ttl;
use crate::filter::{FilterError, ResourceFilter};
use crate::naming::{NameError, validate_dns1123_label, validate_dns1123_subdomain};
use crate::retention::KeepCount;
use crate::schedule::{Schedule, ScheduleError};

pub use crate::phase::{Phase, Progress};

/// What a backup captures. FIXED: other crates use it to pick the storage folder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// Kubernetes objects (and volume data), in Velero's format.
    #[default]
    Resources,
    /// An etcd v3 snapshot of the whole control plane (KKP's `EtcdBackupConfig`).
    EtcdSnapshot,
    /// The record of a restore (Velero's results, log and resource list, or the failure
    /// record), kept like a backup: its files first, then a manifest with each one's SHA-256.
    RestoreRecord,
}

/// The folder of a cluster's storage scope that holds Velero's layout (`backups/`, `restores/`)
/// and nothing else, so a Velero BackupStorageLocation can point its prefix at it: Velero marks
/// a location Unavailable when its prefix holds any other top-level folder, and our etcd
/// snapshots therefore live beside this folder, not in it.
pub const VELERO_DIR: &str = "velero";

/// Layout of a cluster's scope before [`VELERO_DIR`]: Velero's folders sat directly in the
/// scope, beside `etcd-snapshots/`. Read only to move such backups into the current layout.
pub const LEGACY_VELERO_DIRS: [&str; 2] = ["backups", "restores"];

impl BackupKind {
    /// Folder of this kind in a cluster's scope (`/`-separated): `velero/backups` and
    /// `velero/restores` (Velero's layout under [`VELERO_DIR`]), or `etcd-snapshots`.
    pub fn dir(&self) -> &'static str {
        match self {
            BackupKind::Resources => "velero/backups",
            BackupKind::EtcdSnapshot => "etcd-snapshots",
            BackupKind::RestoreRecord => "velero/restores",
        }
    }
}

/// Why a spec is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The filter is invalid.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The schedule is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A referenced name is invalid.
    #[error("{field}: {source}")]
    Name {
        /// Which field.
        field: &'static str,
        /// Why.
        source: NameError,
    },
    /// A restore names neither or both sources.
    #[error(
        "restore must name exactly one source: set backupName or scheduleName (got backupName {backup:?}, scheduleName {schedule:?})"
    )]
    RestoreSource {
        /// The backup name given.
        backup: Option<String>,
        /// The schedule name given.
        schedule: Option<String>,
    },
    /// A namespace mapping with an invalid namespace name.
    #[error("namespaceMapping {from:?} -> {to:?}: {source}")]
    NamespaceMapping {
        /// Source namespace.
        from: String,
        /// Target namespace.
        to: String,
        /// Why.
        source: NameError,
    },
    /// The resource modifiers cannot be used.
    #[error(transparent)]
    ResourceModifiers(#[from] crate::resource_modifiers::ModifierError),
}

fn default_true() -> bool {
    true
}

/// A one-time backup (also the template of a schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// What it captures.
    #[serde(default)]
    pub kind: BackupKind,
    /// Which objects.
    #[serde(default, flatten)]
    pub filter: ResourceFilter,
    /// How long it is kept (default 720h).
    #[serde(default)]
    pub ttl: Ttl,
    /// Name of the storage location; `None` = the default location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Take volume snapshots.
    #[serde(default = "default_true")]
    pub snapshot_volumes: bool,
    /// Back up volume data through file-system backup by default (KKP's choice).
    #[serde(default = "default_true")]
    pub default_volumes_to_fs_backup: bool,
    /// Labels put on the backup.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for BackupSpec {
    fn default() -> Self {
        BackupSpec {
            kind: BackupKind::Resources,
            filter: ResourceFilter::default(),
            ttl: Ttl::default(),
            storage_location: None,
            snapshot_volumes: true,
            default_volumes_to_fs_backup: true,
            labels: BTreeMap::new(),
        }
    }
}

impl BackupSpec {
    /// Validates the filter, location name and labels.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.filter.validate()?;
        if let Some(loc) = &self.storage_location {
            validate_dns1123_subdomain(loc).map_err(|source| SpecError::Name {
                field: "storageLocation",
                source,
            })?;
        }
        for (k, v) in &self.labels {
            crate::selector::validate_label_key(k)
                .and_then(|_| crate::selector::validate_label_value(k, v))
                .map_err(FilterError::from)?;
        }
        Ok(())
    }
}

/// A recurring backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// When to run (cron, `@daily`, `@every 1h`).
    pub schedule: Schedule,
    /// What each run does.
    #[serde(default)]
    pub template: BackupSpec,
    /// Stop creating backups without deleting the schedule.
    #[serde(default)]
    pub paused: bool,
    /// How many backups of this schedule to keep (in addition to TTL); `None` = TTL only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<KeepCount>,
}

impl ScheduleSpec {
    /// Validates the template (the schedule and keep were validated when parsed).
    pub fn validate(&self) -> Result<(), SpecError> {
        self.template.validate()
    }
}

/// What to do when a restored object already exists (Velero's `existingResourcePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExistingResourcePolicy {
    /// Leave the existing object alone and warn.
    #[default]
    None,
    /// Patch it to match the backup (k0rdent's choice).
    Update,
}

/// Which restored objects also get their `status` restored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatusSpec {
    /// Resources whose status is restored (`*` = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources whose status is not restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
}

/// How a restore applies a backup: which objects, into which namespaces, and what happens to
/// objects that already exist.
///
/// Both a [`RestoreSpec`] (a restore in one cluster) and the API's `ClusterRestoreSpec` (a
/// restore into several clusters) flatten it into their own JSON, so these options, their
/// serde attributes, their documentation (the CRD's field descriptions) and their validation
/// are defined once and a `ClusterRestore` hands them to each target's restore unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RestoreOptions {
    /// Which objects of the backup: namespaces, resources, cluster-scoped objects and label
    /// selectors, as in Velero's Restore.
    #[serde(default, flatten)]
    pub filter: ResourceFilter,
    /// Restore namespace `key` as namespace `value` (`{shop: shop-dr}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Objects that already exist in a target: left alone with a warning (`none`, the
    /// default) or updated to the backed-up version (`update`).
    #[serde(default)]
    pub existing_resource_policy: ExistingResourcePolicy,
    /// Also restore the `status` of these resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<RestoreStatusSpec>,
    /// Keep the node ports of restored Services (Velero's default when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_node_ports: Option<bool>,
    /// Only report what would be created, updated and skipped; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl RestoreOptions {
    /// Validates the filter and the namespace mapping.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.filter.validate()?;
        for (from, to) in &self.namespace_mapping {
            for ns in [from, to] {
                validate_dns1123_label(ns).map_err(|source| SpecError::NamespaceMapping {
                    from: from.clone(),
                    to: to.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The namespace an object from `ns` is restored into.
    pub fn target_namespace<'a>(&'a self, ns: &'a str) -> &'a str {
        self.namespace_mapping.get(ns).map_or(ns, String::as_str)
    }
}

/// A restore.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The backup to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// Or: the newest completed backup of this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    /// Which objects, where they go, existing objects, status, node ports, dry run.
    #[serde(flatten)]
    pub options: RestoreOptions,
    /// Velero's resource modifiers (version v1), applied to each object before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_modifiers: Option<crate::resource_modifiers::ResourceModifiers>,
}

impl RestoreSpec {
    /// Validates the source, the options (filter and namespace mapping) and the modifiers.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name = match (&self.backup_name, &self.schedule_name) {
            (Some(b), None) => ("backupName", b),
            (None, Some(s)) => ("scheduleName", s),
            _ => {
                return Err(SpecError::RestoreSource {
                    backup: self.backup_name.clone(),
                    schedule: self.schedule_name.clone(),
                });
            }
        };
        validate_dns1123_subdomain(name.1).map_err(|source| SpecError::Name {
            field: name.0,
            source,
        })?;
        self.options.validate()?;
        if let Some(modifiers) = &self.resource_modifiers {
            modifiers.compile()?;
        }
        Ok(())
    }

    /// The namespace an object from `ns` is restored into.
    pub fn target_namespace<'a>(&'a self, ns: &'a str) -> &'a str {
        self.options.target_namespace(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::LabelSelector;

    #[test]
    fn backup_kind_dirs_and_serde() {
        assert_eq!(BackupKind::Resources.dir(), "velero/backups");
        assert_eq!(BackupKind::RestoreRecord.dir(), "velero/restores");
        assert_eq!(BackupKind::EtcdSnapshot.dir(), "etcd-snapshots");
        for kind in [BackupKind::Resources, BackupKind::RestoreRecord] {
            assert!(kind.dir().starts_with(&format!("{VELERO_DIR}/")));
        }
        assert!(!BackupKind::EtcdSnapshot.dir().starts_with(VELERO_DIR));
        assert_eq!(
            serde_json::to_string(&BackupKind::EtcdSnapshot).unwrap(),
            "\"etcd-snapshot\""
        );
        assert_eq!(
            serde_json::from_str::<BackupKind>("\"resources\"").unwrap(),
            BackupKind::Resources
        );
    }

    #[test]
    fn backup_defaults() {
        let b: BackupSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(b.ttl.to_string(), "720h0m0s");
        assert!(b.snapshot_volumes && b.default_volumes_to_fs_backup);
        assert_eq!(b, BackupSpec::default());
        b.validate().unwrap();
    }

    #[test]
    fn backup_rejects_negative_ttl_in_json() {
        let e = serde_json::from_str::<BackupSpec>(r#"{"ttl":"-1h"}"#).unwrap_err();
        assert!(e.to_string().contains("-1h"), "{e}");
    }

    #[test]
    fn backup_validation() {
        let mut b = BackupSpec {
            storage_location: Some("Bad_Name".into()),
            ..Default::default()
        };
        let e = b.validate().unwrap_err();
        assert!(matches!(
            e,
            SpecError::Name {
                field: "storageLocation",
                ..
            }
        ));
        assert!(e.to_string().contains("Bad_Name"));
        b.storage_location = None;
        b.filter.label_selector = Some(LabelSelector::parse("a=b").unwrap());
        b.filter.or_label_selectors = vec![LabelSelector::parse("c=d").unwrap()];
        assert!(matches!(
            b.validate(),
            Err(SpecError::Filter(FilterError::BothSelectors { .. }))
        ));
    }

    #[test]
    fn schedule_spec_from_json() {
        let s: ScheduleSpec = serde_json::from_str(
            r#"{"schedule":"@every 20m","template":{"includedNamespaces":["app"],"ttl":"24h"},"keep":5}"#,
        )
        .unwrap();
        assert_eq!(s.keep.unwrap().get(), 5);
        assert_eq!(s.template.filter.included_namespaces, vec!["app"]);
        assert!(!s.paused);
        s.validate().unwrap();
        assert!(serde_json::from_str::<ScheduleSpec>(r#"{"schedule":"61 * * * *"}"#).is_err());
        assert!(
            serde_json::from_str::<ScheduleSpec>(r#"{"schedule":"@daily","keep":51}"#).is_err()
        );
    }

    #[test]
    fn restore_validation() {
        let r = RestoreSpec::default();
        assert!(matches!(r.validate(), Err(SpecError::RestoreSource { .. })));
        let both = RestoreSpec {
            backup_name: Some("a".into()),
            schedule_name: Some("b".into()),
            ..Default::default()
        };
        assert!(matches!(
            both.validate(),
            Err(SpecError::RestoreSource { .. })
        ));
        let mut ok = RestoreSpec {
            backup_name: Some("nightly-20240101000000".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        ok.options
            .namespace_mapping
            .insert("old".into(), "New".into());
        let e = ok.validate().unwrap_err();
        assert!(matches!(e, SpecError::NamespaceMapping { .. }));
        assert!(e.to_string().contains("New"));
    }

    #[test]
    fn restore_serde_and_mapping() {
        let r: RestoreSpec = serde_json::from_str(
            r#"{"backupName":"b","existingResourcePolicy":"update","namespaceMapping":{"a":"b"},"restoreStatus":{"includedResources":["*"]}}"#,
        )
        .unwrap();
        assert_eq!(
            r.options.existing_resource_policy,
            ExistingResourcePolicy::Update
        );
        assert_eq!(r.target_namespace("a"), "b");
        assert_eq!(r.target_namespace("c"), "c");
        assert_eq!(
            serde_json::to_value(ExistingResourcePolicy::None).unwrap(),
            "none"
        );
        assert!(!r.options.dry_run);
    }

    #[test]
    fn restore_json_keeps_its_field_order_with_the_options_flattened() {
        let r = RestoreSpec {
            backup_name: Some("b".into()),
            options: RestoreOptions {
                filter: ResourceFilter {
                    included_namespaces: vec!["shop".into()],
                    include_cluster_resources: Some(false),
                    ..ResourceFilter::default()
                },
                namespace_mapping: [("shop".to_string(), "shop-dr".to_string())].into(),
                existing_resource_policy: ExistingResourcePolicy::Update,
                restore_status: Some(RestoreStatusSpec {
                    included_resources: vec!["*".into()],
                    ..RestoreStatusSpec::default()
                }),
                preserve_node_ports: Some(true),
                dry_run: true,
            },
            ..RestoreSpec::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"backupName":"b","includedNamespaces":["shop"],"includeClusterResources":false,"namespaceMapping":{"shop":"shop-dr"},"existingResourcePolicy":"update","restoreStatus":{"includedResources":["*"]},"preserveNodePorts":true,"dryRun":true}"#
        );
        assert_eq!(serde_json::from_str::<RestoreSpec>(&json).unwrap(), r);
        assert_eq!(
            serde_json::to_string(&RestoreSpec::default()).unwrap(),
            r#"{"existingResourcePolicy":"none","dryRun":false}"#
        );
    }
}
