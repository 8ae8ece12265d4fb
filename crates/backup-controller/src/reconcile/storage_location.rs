//! StorageLocation: check the spec, open the location with its own credentials, probe it
//! (write, read back, delete a sentinel; list only for ReadOnly) and report Available or
//! Unavailable with the probe's reason, again every `validationFrequency`.

use std::sync::Arc;
use std::time::Duration;

use backup_storage::Availability;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::Result;
use crate::metrics::LocationLabels;
use backup_api::status::{Condition, merge_conditions};
use backup_api::storage_location::DEFAULT_VALIDATION_FREQUENCY;
use backup_api::{LocationPhase, StorageLocation, StorageLocationStatus};
use backup_kube::locations::LocationProblem;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "storagelocation";

pub use backup_api::status::READY;
/// Condition: the last probe succeeded.
pub const AVAILABLE: &str = "Available";

/// What the I/O found.
#[derive(Debug)]
pub enum Finding {
    /// The location cannot even be opened.
    Unusable(LocationProblem),
    /// It opened; this is what the probe said.
    Probed(Availability),
}

/// The status for a finding (pure).
pub fn status_for(
    finding: &Finding,
    previous: &StorageLocationStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> StorageLocationStatus {
    let (phase, reason, message, conditions) = match finding {
        Finding::Unusable(problem) => {
            let reason = problem.reason();
            let message = problem.to_string();
            (
                LocationPhase::Unavailable,
                reason,
                message.clone(),
                vec![
                    Condition::unmet(READY, reason, message.clone()),
                    Condition::unmet(AVAILABLE, reason, message),
                ],
            )
        }
        Finding::Probed(availability) => {
            let reason = availability.reason();
            let message = if availability.is_available() {
                "the location accepted a write, read it back and deleted it".to_string()
            } else {
                availability.to_string()
            };
            let ready = Condition::met(READY, "SpecValid", "the spec and credentials can be used");
            let available = if availability.is_available() {
                Condition::met(AVAILABLE, reason, message.clone())
            } else {
                Condition::unmet(AVAILABLE, reason, message.clone())
            };
            let phase = if availability.is_available() {
                LocationPhase::Available
            } else {
                LocationPhase::Unavailable
            };
            (phase, reason, message, vec![ready, available])
        }
    };
    let conditions = conditions
        .into_iter()
        .map(|c| c.at(now, generation))
        .collect();
    StorageLocationStatus {
        phase: Some(phase),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_validation_time: Some(now),
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, conditions),
    }
}

/// When to probe again: the validated spec's `validationFrequency` (Velero's default 1 m;
/// `0s` never). It takes the parsed value, so a frequency that does not parse can never turn
/// into the default: such a spec is invalid and waits for a change.
pub fn next_probe(frequency: Option<backup_core::GoDuration>) -> Option<Duration> {
    let frequency = frequency.map_or(DEFAULT_VALIDATION_FREQUENCY, |d| d.0);
    (!frequency.is_zero()).then_some(frequency)
}

/// Reconciles one StorageLocation.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "StorageLocation", namespace = %location.metadata.namespace.as_deref().unwrap_or_default(), name = %location.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(location: Arc<StorageLocation>, ctx: Arc<Context>) -> Result<Action> {
    with_finalizer(CONTROLLER, location, ctx, apply, cleanup).await
}

async fn apply(location: Arc<StorageLocation>, ctx: Arc<Context>) -> Result<Action> {
    // A new or changed spec (the default flag, the bucket, the credentials) may change what
    // the project's ClusterBackups can do.
    let observed = location.status.as_ref().and_then(|s| s.observed_generation);
    if observed != location.metadata.generation {
        ctx.wake_backups_in(&location.namespace().unwrap_or_default());
    }
    let finding = match ctx.locations.open(&location).await {
        Ok(resolved) => Finding::Probed(resolved.repo.probe().await),
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => Finding::Unusable(problem),
    };
    let previous = location.status.clone().unwrap_or_default();
    let status = status_for(
        &finding,
        &previous,
        location.metadata.generation,
        ctx.clock.now(),
    );
    let available = status.phase == Some(LocationPhase::Available);
    ctx.metrics.location_available(labels(&location), available);
    if previous.phase != status.phase || previous.reason != status.reason {
        let note = status.message.clone().unwrap_or_default();
        let reason = if available {
            "Available"
        } else {
            "Unavailable"
        };
        ctx.event(&location.object_ref(&()), !available, reason, "Probe", note)
            .await;
    }
    write_status(&ctx, location.as_ref(), &status).await?;
    // An invalid spec was reported above; only a change can fix it.
    let frequency = match location.spec.to_core() {
        Ok(core) => next_probe(core.validation_frequency),
        Err(_) => None,
    };
    // A project's consent wakes nothing we watch: look for it soon (see `recheck_after`).
    let frequency = match status.reason.as_deref() {
        Some(backup_kube::secrets::NOT_SHARED_REASON) => {
            Some(backup_kube::secrets::CONSENT_RECHECK)
        }
        _ => frequency,
    };
    Ok(match frequency {
        Some(every) => Action::requeue(every),
        None => Action::await_change(),
    })
}

async fn cleanup(location: Arc<StorageLocation>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = location.namespace().unwrap_or_default();
    ctx.wake_backups_in(&namespace);
    ctx.locations.forget(&namespace, &location.name_any());
    ctx.metrics.forget_location(&labels(&location));
    Ok(Action::await_change())
}

fn labels(location: &StorageLocation) -> LocationLabels {
    LocationLabels {
        namespace: location.namespace().unwrap_or_default(),
        name: location.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_api::InvalidField;
    use backup_api::status::find;

    fn now() -> Timestamp {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn probes_repeat_at_the_validated_frequency() {
        let every = |text: &str| next_probe(Some(text.parse().unwrap()));
        assert_eq!(next_probe(None), Some(DEFAULT_VALIDATION_FREQUENCY));
        assert_eq!(every("30s"), Some(Duration::from_secs(30)));
        assert_eq!(every("0s"), None);
    }

    #[test]
    fn an_available_probe_is_phase_available_with_both_conditions_true() {
        let s = status_for(
            &Finding::Probed(Availability::Available),
            &StorageLocationStatus::default(),
            Some(3),
            now(),
        );
        assert_eq!(s.phase, Some(LocationPhase::Available));
        assert_eq!(s.reason.as_deref(), Some("Available"));
        assert_eq!(s.last_validation_time, Some(now()));
        assert!(find(&s.conditions, READY).unwrap().is_true());
        assert!(find(&s.conditions, AVAILABLE).unwrap().is_true());
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn a_failed_probe_carries_the_probes_reason_and_what_to_fix() {
        let s = status_for(
            &Finding::Probed(Availability::AccessDenied {
                message: "InvalidAccessKeyId".into(),
            }),
            &StorageLocationStatus::default(),
            Some(1),
            now(),
        );
        assert_eq!(s.phase, Some(LocationPhase::Unavailable));
        assert_eq!(s.reason.as_deref(), Some("AccessDenied"));
        assert!(s.message.unwrap().contains("check the access key"));
        assert!(find(&s.conditions, READY).unwrap().is_true());
        assert!(!find(&s.conditions, AVAILABLE).unwrap().is_true());
    }

    #[test]
    fn an_unusable_spec_is_unavailable_and_not_ready_naming_the_field() {
        let problem = LocationProblem::Invalid {
            name: "main".into(),
            field: InvalidField::new("spec.validationFrequency", "not a duration"),
        };
        let s = status_for(
            &Finding::Unusable(problem),
            &StorageLocationStatus::default(),
            Some(1),
            now(),
        );
        assert_eq!(s.reason.as_deref(), Some("LocationInvalid"));
        let ready = find(&s.conditions, READY).unwrap();
        assert!(!ready.is_true());
        assert!(
            ready.message.contains("spec.validationFrequency"),
            "{}",
            ready.message
        );
    }
}
