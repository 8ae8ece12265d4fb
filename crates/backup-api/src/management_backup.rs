//! `ManagementBackup` (k0rdent's): a backup of the management cluster itself, in Velero's
//! format, so a lost management cluster comes back with its locations, clusters and schedules.
//!
//! It holds every `backupfleet.dev` object of every namespace, the Secrets and ConfigMaps they
//! reference, their Namespaces, and the objects the `orLabelSelectors` match (default: those
//! labelled `backupfleet.dev/component`). Because it reads every project, it is honoured only
//! in the controller's own namespace: elsewhere it would let a project copy other projects'
//! Secrets into its own bucket.
//!
//! Runs are `<name>-<YYYYMMDDhhmmss>`, stored under `<location prefix>/<namespace>/management/`
//! (where `backupctl --project <namespace> --cluster management` looks). With
//! `performOnManagementUpgrade`, a controller starting as a new release first takes
//! `<name>-<release>`, labelled `backupfleet.dev/release-backup=<release>`.

use backup_core::{
    KeepCount, LabelSelector, Operator, Requirement, Schedule, Ttl, validate_dns1123_label,
    validate_dns1123_subdomain,
};
use jiff::tz::TimeZone;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::invalid::InvalidField;
use super::recorded_runs::RecordedRunsStatus;

/// The label that marks objects belonging with the management cluster's backup by default.
pub const COMPONENT_LABEL: &str = "backupfleet.dev/component";
/// The label of a release backup, valued with the release.
pub const RELEASE_BACKUP_LABEL: &str = "backupfleet.dev/release-backup";
/// The "cluster" part of the storage scope of management backups.
pub const MANAGEMENT_SCOPE: &str = "management";
/// Backups kept when the spec does not say.
pub const DEFAULT_KEEP: u32 = 20;

/// When and where the management cluster is backed up (`spec`).
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "backupfleet.dev",
    version = "v1alpha1",
    kind = "ManagementBackup",
    plural = "managementbackups",
    shortname = "mgmtbk",
    namespaced,
    status = "ManagementBackupStatus",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Backup","type":"string","jsonPath":".status.lastBackups[0].backupName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.lastBackups[0].backupPhase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagementBackupSpec {
    /// When: cron (UTC), `@daily`-style nicknames or `@every 6h`; omitted: one backup, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The StorageLocation (of this namespace); the default location when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Take a backup `<name>-<release>` when the controller starts as a new release (only
    /// with a schedule, as in k0rdent).
    #[serde(default)]
    pub perform_on_management_upgrade: bool,
    /// Further objects to include, of any kind and namespace: those matching any of these
    /// selectors. Default: the label `backupfleet.dev/component` (any value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub or_label_selectors: Option<Vec<LabelSelector>>,
    /// How long backups are kept, and how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<ManagementRetention>,
}

/// How long management backups are kept, and how many.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagementRetention {
    /// Keep the newest N backups (1..=50, default 20); older ones are deleted after each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<i64>,
    /// How long each backup is kept, as a Go duration (default `720h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// What the controller last found (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagementBackupStatus {
    /// The runs, the schedule and the `Ready` condition.
    #[serde(flatten)]
    pub runs: RecordedRunsStatus,
    /// The controller release that last reconciled this object: a new one owes a release
    /// backup when `performOnManagementUpgrade` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_release: Option<String>,
}

/// A ManagementBackup spec, checked.
#[derive(Debug, Clone)]
pub struct ValidManagementBackup {
    /// The schedule (UTC); `None` for one backup.
    pub schedule: Option<(Schedule, TimeZone)>,
    /// The location; `None` = the default.
    pub storage_location: Option<String>,
    /// Whether a new release takes a backup.
    pub on_upgrade: bool,
    /// The selectors of further objects.
    pub or_label_selectors: Vec<LabelSelector>,
    /// Backups kept.
    pub keep: KeepCount,
    /// Each backup's TTL.
    pub ttl: Ttl,
}

impl ManagementBackupSpec {
    /// Checks every field; `name` is the object's name, the base of the backups' names.
    pub fn validate(&self, name: &str) -> Result<ValidManagementBackup, InvalidField> {
        validate_dns1123_label(name).map_err(|e| {
            InvalidField::new(
                "metadata.name",
                format!("{name:?}: {e} (backups are named after it)"),
            )
        })?;
        let schedule = match &self.schedule {
            None => None,
            Some(text) => Some((
                Schedule::parse(text)
                    .map_err(|e| InvalidField::new("spec.schedule", e.to_string()))?,
                TimeZone::UTC,
            )),
        };
        if self.perform_on_management_upgrade && schedule.is_none() {
            return Err(InvalidField::new(
                "spec.performOnManagementUpgrade",
                "only valid with a schedule: set spec.schedule, or take a one-time backup \
                 before the upgrade instead",
            ));
        }
        if let Some(location) = &self.storage_location {
            validate_dns1123_subdomain(location).map_err(|e| {
                InvalidField::new("spec.storageLocation", format!("{location:?}: {e}"))
            })?;
        }
        let or_label_selectors = match &self.or_label_selectors {
            None => vec![LabelSelector {
                match_expressions: vec![Requirement {
                    key: COMPONENT_LABEL.into(),
                    operator: Operator::Exists,
                    values: Vec::new(),
                }],
                ..LabelSelector::default()
            }],
            Some(selectors) => {
                for (i, selector) in selectors.iter().enumerate() {
                    selector.validate().map_err(|e| {
                        InvalidField::new(format!("spec.orLabelSelectors[{i}]"), e.to_string())
                    })?;
                }
                selectors.clone()
            }
        };
        let retention = self.retention.clone().unwrap_or_default();
        let keep = match retention.keep {
            None => KeepCount::new(DEFAULT_KEEP),
            Some(n) => KeepCount::from_spec(n),
        }
        .map_err(|e| InvalidField::new("spec.retention.keep", e.to_string()))?;
        let ttl = match &retention.ttl {
            None => Ttl::default(),
            Some(text) => Ttl::parse(text)
                .map_err(|e| InvalidField::new("spec.retention.ttl", e.to_string()))?,
        };
        Ok(ValidManagementBackup {
            schedule,
            storage_location: self.storage_location.clone(),
            on_upgrade: self.perform_on_management_upgrade,
            or_label_selectors,
            keep,
            ttl,
        })
    }
}

/// A release as it appears in a backup's name and label: lower case, and every character
/// a name cannot hold (`+`, `_`, …) turned into `-` (`v1.2.0+build_7` → `v1.2.0-build-7`).
pub fn release_slug(release: &str) -> Result<String, InvalidField> {
    let slug: String = release
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug.trim_matches(|c| c == '-' || c == '.').to_string();
    if slug.is_empty() || slug.len() > 40 {
        return Err(InvalidField::new(
            "--release",
            format!(
                "{release:?} cannot name a backup: use 1 to 40 letters, digits, dots and dashes"
            ),
        ));
    }
    Ok(slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ManagementBackupSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_select_the_component_label_and_keep_twenty_for_thirty_days() {
        let v = spec(serde_json::json!({"schedule": "@daily", "performOnManagementUpgrade": true}))
            .validate("mgmt")
            .unwrap();
        assert!(v.on_upgrade);
        assert_eq!(v.keep.get(), DEFAULT_KEEP);
        assert_eq!(v.ttl, Ttl::default());
        assert_eq!(v.or_label_selectors.len(), 1);
        let labelled = [(COMPONENT_LABEL.to_string(), "anything".to_string())].into();
        assert!(v.or_label_selectors[0].matches(&labelled));
        assert!(!v.or_label_selectors[0].matches(&Default::default()));
    }

    #[test]
    fn every_bad_field_is_named() {
        for (json, name, field) in [
            (
                serde_json::json!({"performOnManagementUpgrade": true}),
                "m",
                "spec.performOnManagementUpgrade",
            ),
            (
                serde_json::json!({"schedule": "sometimes"}),
                "m",
                "spec.schedule",
            ),
            (
                serde_json::json!({"retention": {"keep": 0}}),
                "m",
                "spec.retention.keep",
            ),
            (
                serde_json::json!({"retention": {"keep": 51}}),
                "m",
                "spec.retention.keep",
            ),
            (
                serde_json::json!({"retention": {"ttl": "a week"}}),
                "m",
                "spec.retention.ttl",
            ),
            (
                serde_json::json!({"orLabelSelectors": [{"matchLabels": {"bad key!": "x"}}]}),
                "m",
                "spec.orLabelSelectors[0]",
            ),
            (
                serde_json::json!({"storageLocation": "a/b"}),
                "m",
                "spec.storageLocation",
            ),
            (serde_json::json!({}), "has.dots", "metadata.name"),
        ] {
            let e = spec(json.clone()).validate(name).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
        }
    }

    #[test]
    fn releases_become_names_or_a_clear_error() {
        assert_eq!(release_slug("0.4.1").unwrap(), "0.4.1");
        assert_eq!(release_slug("v1.2.0+Build_7").unwrap(), "v1.2.0-build-7");
        assert!(release_slug("+++").is_err());
        assert!(release_slug(&"9".repeat(41)).is_err());
    }

    #[test]
    fn the_status_keeps_the_recorded_runs_shape_beside_the_release() {
        let status = ManagementBackupStatus {
            runs: RecordedRunsStatus {
                last_run_now_token: Some("t".into()),
                ..RecordedRunsStatus::default()
            },
            last_release: Some("0.4.1".into()),
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"lastRunNowToken": "t", "lastRelease": "0.4.1"})
        );
    }
}
