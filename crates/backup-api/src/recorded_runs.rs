//! The status of kinds that run one backup at a time on a schedule and keep a record of their
//! latest runs, KKP's `lastBackups` shape: EtcdBackupConfig (etcd snapshots) and
//! ManagementBackup (the management cluster itself). One shape, so one decision
//! (the controller's `reconcile::recorded_runs`) serves both.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::optional_date_time;
use super::status::Condition;

/// What the controller last found: the status of the kinds that keep a record of their
/// latest runs (EtcdBackupConfig; ManagementBackup adds its own fields beside it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRunsStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub last_schedule_time: Option<Timestamp>,
    /// The next firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub next_schedule_time: Option<Timestamp>,
    /// The last `backupfleet.dev/run-now` token served (each new token runs once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now_token: Option<String>,
    /// The latest runs, newest first, at most `keep` plus the ones just rotated out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_backups: Vec<BackupRecord>,
    /// `Ready`: the spec, cluster and location are usable (its message says what to fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One run (KKP's `lastBackups[]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The firing it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub scheduled_time: Option<Timestamp>,
    /// The run's name in storage.
    pub backup_name: String,
    /// `InProgress`, `Completed` or `Failed`.
    pub backup_phase: backup_core::Phase,
    /// When the run actually started (its lag behind `scheduledTime` is the scheduler's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub backup_start_time: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub backup_finished_time: Option<Timestamp>,
    /// `Completed` once rotation deleted it (or `Failed`, see `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_phase: Option<backup_core::Phase>,
    /// When rotation deleted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    pub delete_finished_time: Option<Timestamp>,
    /// Why it failed, or what to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
