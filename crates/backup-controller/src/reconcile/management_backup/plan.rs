//! The pure decision of a ManagementBackup: the shared recorded-runs one
//! ([`recorded_runs::plan::plan`]), plus the release backup. A controller running as a new
//! release owes one backup, named after the release, before any other run (when
//! `spec.performOnManagementUpgrade`); the release is recorded once its backup is under way,
//! or at once when none is owed. A blocked backup looks again for the fix at least every
//! [`BLOCKED_RECHECK`].

use crate::reconcile::recorded_runs::{
    self, BLOCKED_RECHECK, Decision, Firing, FiringKind, decision,
};
use backup_api::ManagementBackupStatus;

/// What a run is called in Events.
pub const NOUN: &str = "Backup";

/// What the decision reads.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// What the shared decision reads (its `previous` is the status's runs).
    pub runs: recorded_runs::PlanInput<'a>,
    /// The release the status records (`lastRelease`).
    pub last_release: Option<&'a str>,
    /// Whether a new release owes a backup (`spec.performOnManagementUpgrade`).
    pub on_upgrade: bool,
    /// The release this controller runs as.
    pub release: &'a str,
    /// [`PlanInput::release`] as a backup's name holds it.
    pub release_slug: &'a str,
}

/// Decides; see the module docs.
pub fn plan(input: &PlanInput<'_>) -> Decision<ManagementBackupStatus> {
    let mut runs = recorded_runs::plan::plan(&input.runs, owed(input));
    if input.runs.blocked.is_some() {
        runs.requeue_after = Some(
            runs.requeue_after
                .map_or(BLOCKED_RECHECK, |after| after.min(BLOCKED_RECHECK)),
        );
    }
    let last_release = last_release(input, runs.fire.as_ref());
    let previous = ManagementBackupStatus {
        runs: input.runs.previous.clone(),
        last_release: input.last_release.map(String::from),
    };
    decision(
        runs,
        |runs| ManagementBackupStatus { runs, last_release },
        &previous,
        &input.runs.live,
        NOUN,
    )
}

/// The release backup owed, by its name's suffix: one when the controller runs as a release
/// other than the one recorded. None for the first release recorded (nothing to come back
/// from), nor unless asked for.
fn owed<'a>(input: &PlanInput<'a>) -> Option<&'a str> {
    (input.on_upgrade && input.last_release.is_some_and(|last| last != input.release))
        .then_some(input.release_slug)
}

/// The release to record: the current one once its backup is under way; the recorded one
/// while a release backup is owed and waits.
fn last_release(input: &PlanInput<'_>, fire: Option<&Firing>) -> Option<String> {
    match (fire, owed(input)) {
        (Some(fire), _) if fire.kind == FiringKind::Release => Some(input.release.to_string()),
        (_, Some(_)) => input.last_release.map(String::from),
        _ => Some(input.release.to_string()),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
