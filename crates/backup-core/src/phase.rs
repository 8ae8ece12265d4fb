//! Lifecycle phases and progress, modelled on Velero's `BackupPhase`/`RestorePhase`.
//!
//! One phase enum for backups and restores keeps the controller's status logic and metrics
//! uniform across engines (Velero in-cluster, direct, etcd).

use serde::{Deserialize, Serialize};

/// Where an operation is in its life. Serialised with Velero's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum Phase {
    /// Accepted, not started.
    #[default]
    New,
    /// The spec failed validation; nothing was done.
    FailedValidation,
    /// Running.
    InProgress,
    /// Items are done; asynchronous plugin operations (snapshots, data movers) still run.
    WaitingForPluginOperations,
    /// Writing final metadata.
    Finalizing,
    /// Everything succeeded.
    Completed,
    /// Finished, with some items failing.
    PartiallyFailed,
    /// Finished unsuccessfully.
    Failed,
    /// Being deleted.
    Deleting,
}

impl Phase {
    /// True for phases that never change again (the controller stops polling).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Completed | Phase::PartiallyFailed | Phase::Failed | Phase::FailedValidation
        )
    }

    /// True only for `Completed`: the only phase whose result is a full restore point.
    pub fn is_successful(&self) -> bool {
        matches!(self, Phase::Completed)
    }

    /// The Velero spelling, also used as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::New => "New",
            Phase::FailedValidation => "FailedValidation",
            Phase::InProgress => "InProgress",
            Phase::WaitingForPluginOperations => "WaitingForPluginOperations",
            Phase::Finalizing => "Finalizing",
            Phase::Completed => "Completed",
            Phase::PartiallyFailed => "PartiallyFailed",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase name that is none of Velero's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {given:?}: expected one of {}", Phase::ALL.map(|p| p.as_str()).join(", "))]
pub struct UnknownPhase {
    /// The text that was given.
    pub given: String,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 9] = [
        Phase::New,
        Phase::FailedValidation,
        Phase::InProgress,
        Phase::WaitingForPluginOperations,
        Phase::Finalizing,
        Phase::Completed,
        Phase::PartiallyFailed,
        Phase::Failed,
        Phase::Deleting,
    ];
}

impl std::str::FromStr for Phase {
    type Err = UnknownPhase;
    /// Parses Velero's spelling, as recorded in manifests and status.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase {
                given: s.to_string(),
            })
    }
}

/// Items processed so far out of the items known to be in scope (Velero's `progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Items processed.
    pub items_done: u64,
    /// Items in scope (may grow while a backup discovers more).
    pub total_items: u64,
}

impl Progress {
    /// Percentage 0.0–100.0, clamped; `0.0` when the total is unknown (0). Clamped because
    /// Velero can report more items done than the initial estimate.
    pub fn percentage(&self) -> f64 {
        if self.total_items == 0 {
            return 0.0;
        }
        (self.items_done as f64 / self.total_items as f64 * 100.0).clamp(0.0, 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_and_successful() {
        let terminal = [
            Phase::Completed,
            Phase::PartiallyFailed,
            Phase::Failed,
            Phase::FailedValidation,
        ];
        for p in [
            Phase::New,
            Phase::InProgress,
            Phase::WaitingForPluginOperations,
            Phase::Finalizing,
            Phase::Deleting,
        ] {
            assert!(!p.is_terminal(), "{p}");
            assert!(!p.is_successful());
        }
        for p in terminal {
            assert!(p.is_terminal(), "{p}");
            assert_eq!(p.is_successful(), p == Phase::Completed);
        }
    }

    #[test]
    fn serde_uses_velero_spelling() {
        assert_eq!(
            serde_json::to_string(&Phase::PartiallyFailed).unwrap(),
            "\"PartiallyFailed\""
        );
        let p: Phase = serde_json::from_str("\"WaitingForPluginOperations\"").unwrap();
        assert_eq!(p, Phase::WaitingForPluginOperations);
        assert_eq!(Phase::default(), Phase::New);
    }

    #[test]
    fn parses_every_spelling_it_prints_and_names_the_accepted_ones() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
        }
        let e = "Done".parse::<Phase>().unwrap_err();
        assert!(e.to_string().contains("\"Done\""), "{e}");
        assert!(e.to_string().contains("PartiallyFailed"), "{e}");
    }

    #[test]
    fn progress_percentage() {
        let p = |d, t| {
            Progress {
                items_done: d,
                total_items: t,
            }
            .percentage()
        };
        assert_eq!(p(0, 0), 0.0);
        assert_eq!(p(1, 4), 25.0);
        assert_eq!(p(10, 5), 100.0);
    }
}
