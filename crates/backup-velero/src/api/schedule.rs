//! `schedules.velero.io/v1`: a cron schedule that creates Velero Backups from a template.

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::BackupSpec;
use super::common::{Extra, date_time, string_enum};

string_enum! {
    /// Whether Velero accepted a schedule (`status.phase`).
    SchedulePhase {
        /// Created, not yet validated.
        New,
        /// Valid; backups are created on schedule.
        Enabled,
        /// Rejected (e.g. an unparseable cron expression); see `validationErrors`.
        FailedValidation,
    }
}

/// A recurring backup (`spec`). Unknown fields are kept in `extra`.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "velero.io",
    version = "v1",
    kind = "Schedule",
    plural = "schedules",
    namespaced,
    status = "ScheduleStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// The Backup each run creates.
    pub template: BackupSpec,
    /// Cron expression (5 fields, `@every 1h`, `@daily`, ...).
    pub schedule: String,
    /// Make created backups owned by the schedule (deleted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_owner_references_in_backup: Option<bool>,
    /// Stop creating backups without deleting the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Do not run immediately when created or unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_immediately: Option<bool>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What Velero reports about a schedule (`status`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SchedulePhase>,
    /// When the last backup was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub last_backup: Option<Timestamp>,
    /// When a run was last skipped (`skipImmediately`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub last_skipped: Option<Timestamp>,
    /// Why the schedule was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_errors: Option<Vec<String>>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}
