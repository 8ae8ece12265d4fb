//! The seams between the controller and the things that actually back up one cluster.
//!
//! Engines (Velero in-cluster, direct/agentless, etcd) implement these traits against ONE
//! cluster; the controller fans out over a fleet and never needs to know which engine runs.
//! No kube types appear here so the traits can be implemented and faked without a cluster.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::phase::{Phase, Progress};
use crate::selector::LabelSelector;
use crate::spec::{BackupSpec, RestoreSpec};

/// What an engine reports about one backup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Items processed.
    pub progress: Progress,
    /// When work started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    /// When it reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// Item-level errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Item-level warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why the spec was rejected (phase `FailedValidation`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
}

/// What an engine reports about one restore (same shape: one status UI for both).
pub type RestoreStatus = BackupStatus;

/// A finished backup as the engine's storage records it: what a scheduler rebuilds its status
/// from and what retention decides on, so the bucket (not a controller's memory) is the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredBackup {
    /// The backup's name.
    pub name: String,
    /// Its recorded final phase (`Completed`, `PartiallyFailed`, ...).
    pub phase: Phase,
    /// Items written.
    pub items_backed_up: u64,
    /// Items in scope.
    pub total_items: u64,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// When its TTL runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Timestamp>,
    /// Item errors recorded.
    pub errors: u64,
    /// Item warnings recorded.
    pub warnings: u64,
    /// The labels it was created with (a schedule's runs carry its schedule label).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl StoredBackup {
    /// When it was taken, for ordering: start time, else completion time.
    pub fn taken_at(&self) -> Option<Timestamp> {
        self.started.or(self.completed)
    }
}

/// Engine failures, by kind, so callers can decide to retry (Unavailable), give up (Invalid,
/// Forbidden) or treat as done (NotFound on delete).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The named backup/restore does not exist.
    #[error("{what} {name:?} not found")]
    NotFound {
        /// `backup`, `restore`, ...
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Creating something that already exists.
    #[error("{what} {name:?} already exists: choose another name or delete the existing one")]
    AlreadyExists {
        /// `backup`, `restore`, ...
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The engine rejected the request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Temporarily unreachable (cluster down, storage outage); retrying may help.
    #[error("engine unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// Credentials lack permission.
    #[error("forbidden: {0}; check the credentials' RBAC or bucket permissions")]
    Forbidden(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    /// A fixed, low-cardinality label for metrics (`error_kind="unavailable"`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            EngineError::NotFound { .. } => "not_found",
            EngineError::AlreadyExists { .. } => "already_exists",
            EngineError::Invalid(_) => "invalid",
            EngineError::Unavailable { .. } => "unavailable",
            EngineError::Forbidden(_) => "forbidden",
            EngineError::Other(_) => "other",
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EngineError::Unavailable { .. })
    }
}

/// Backs up one cluster.
#[async_trait]
pub trait BackupEngine: Send + Sync {
    /// Starts a backup named `name`; returns once accepted (not finished). Must be idempotent
    /// for a backup already started with the same spec, and return `AlreadyExists` otherwise.
    async fn start_backup(&self, name: &str, spec: &BackupSpec) -> Result<(), EngineError>;
    /// Reports current status.
    async fn observe_backup(&self, name: &str) -> Result<BackupStatus, EngineError>;
    /// Deletes the backup and its stored data.
    async fn delete_backup(&self, name: &str) -> Result<(), EngineError>;
    /// The finished backups in this engine's storage whose labels match `selector`, oldest
    /// first. Running backups are not listed (they are not restore points yet).
    async fn list_backups(
        &self,
        selector: &LabelSelector,
    ) -> Result<Vec<StoredBackup>, EngineError>;
}

/// Restores into one cluster.
#[async_trait]
pub trait RestoreEngine: Send + Sync {
    /// Starts a restore named `name`; returns once accepted.
    async fn start_restore(&self, name: &str, spec: &RestoreSpec) -> Result<(), EngineError>;
    /// Reports current status.
    async fn observe_restore(&self, name: &str) -> Result<RestoreStatus, EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A minimal in-memory engine proving the traits are implementable and object-safe.
    #[derive(Default)]
    struct Fake {
        backups: Mutex<BTreeMap<String, BackupStatus>>,
    }

    #[async_trait]
    impl BackupEngine for Fake {
        async fn start_backup(&self, name: &str, _spec: &BackupSpec) -> Result<(), EngineError> {
            let mut b = self.backups.lock().unwrap();
            if b.contains_key(name) {
                return Err(EngineError::AlreadyExists {
                    what: "backup",
                    name: name.into(),
                });
            }
            b.insert(name.into(), BackupStatus::default());
            Ok(())
        }
        async fn observe_backup(&self, name: &str) -> Result<BackupStatus, EngineError> {
            self.backups
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .ok_or(EngineError::NotFound {
                    what: "backup",
                    name: name.into(),
                })
        }
        async fn delete_backup(&self, name: &str) -> Result<(), EngineError> {
            self.backups.lock().unwrap().remove(name);
            Ok(())
        }
        async fn list_backups(
            &self,
            _selector: &LabelSelector,
        ) -> Result<Vec<StoredBackup>, EngineError> {
            Ok(Vec::new())
        }
    }

    /// Drives a future that never waits (the fake never returns Pending).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("fake engine future was pending"),
        }
    }

    #[test]
    fn fake_engine_via_dyn() {
        let engine: Box<dyn BackupEngine> = Box::new(Fake::default());
        let spec = BackupSpec::default();
        block_on(engine.start_backup("b1", &spec)).unwrap();
        let again = block_on(engine.start_backup("b1", &spec)).unwrap_err();
        assert_eq!(again.metric_label(), "already_exists");
        assert_eq!(
            block_on(engine.observe_backup("b1")).unwrap().phase,
            Phase::New
        );
        block_on(engine.delete_backup("b1")).unwrap();
        let e = block_on(engine.observe_backup("b1")).unwrap_err();
        assert!(matches!(e, EngineError::NotFound { .. }));
        assert!(e.to_string().contains("b1"));
    }

    #[test]
    fn metric_labels_and_retry() {
        let all = [
            EngineError::NotFound {
                what: "backup",
                name: "x".into(),
            },
            EngineError::AlreadyExists {
                what: "backup",
                name: "x".into(),
            },
            EngineError::Invalid("x".into()),
            EngineError::Unavailable { reason: "x".into() },
            EngineError::Forbidden("x".into()),
            EngineError::Other("x".into()),
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(|e| e.metric_label()).collect();
        assert_eq!(labels.len(), all.len());
        assert_eq!(all.iter().filter(|e| e.is_retryable()).count(), 1);
    }

    #[test]
    fn status_serde() {
        let s = BackupStatus {
            phase: Phase::Completed,
            progress: Progress {
                items_done: 3,
                total_items: 3,
            },
            started: Some("2024-01-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["phase"], "Completed");
        assert_eq!(v["progress"]["itemsDone"], 3);
        assert_eq!(serde_json::from_value::<BackupStatus>(v).unwrap(), s);
    }
}
