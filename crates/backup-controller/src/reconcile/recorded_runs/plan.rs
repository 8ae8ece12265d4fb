//! The pure decision of an EtcdBackupConfig reconcile: write the outcome of the snapshot that
//! ended, mark one cut off by a restart `Failed`, and fire the next one when it is due.
//!
//! The schedule rule is the controller's one ([`schedule::due`]): the most recent missed slot
//! runs once. A snapshot is recorded (`InProgress`) before it starts; rotation after it marks
//! the snapshots it deleted, and the list is bounded by `keep`. A new run-now token takes one
//! snapshot at once, named with its time, without moving the schedule.
//!
//! The status read comes from the controller's cache, which can be behind the status this
//! process just wrote. A decision on such a view would call its own snapshot interrupted or
//! fire a slot twice, so while the cache does not show the live snapshot's record yet, the
//! plan waits for it; and an outcome is released only once the cache shows it written.

use std::time::Duration;

use backup_core::{Phase, scheduled_backup_name};
use jiff::Timestamp;

use crate::api::cluster_restore::READY;
use crate::api::etcd_backup_config::{
    EtcdBackupConfigStatus, EtcdBackupRecord, ValidEtcdBackupConfig,
};
use crate::api::status::{Condition, merge_conditions};
use crate::reconcile::schedule::{self, Due, Timing};
use crate::runs::EtcdFinished;

/// The message of a snapshot cut off by a restart.
pub const INTERRUPTED: &str = "interrupted: the controller stopped (restart or lost leadership) \
    while this snapshot ran; nothing was stored (a snapshot is listed only once complete)";

/// What this process knows of the config's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// None runs here.
    Idle,
    /// One runs here, under this name.
    Running(String),
    /// One ended here; its outcome is not in the status yet.
    Finished(Box<EtcdFinished>),
}

/// What the decision reads.
pub struct PlanInput<'a> {
    /// The config's name (the base of the snapshots' names).
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// When it was created.
    pub created: Timestamp,
    /// Now.
    pub now: Timestamp,
    /// The checked spec.
    pub spec: &'a ValidEtcdBackupConfig,
    /// The status as last written.
    pub previous: &'a EtcdBackupConfigStatus,
    /// The snapshot of this process.
    pub live: Live,
    /// Why snapshots cannot be taken: (reason, message).
    pub blocked: Option<(String, String)>,
    /// A `backupfleet.dev/run-now` token not served yet.
    pub run_now: Option<&'a str>,
}

/// A snapshot to take, after the status announcing it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The slot (or, one-time, the moment).
    pub at: Timestamp,
    /// The snapshot's name.
    pub name: String,
    /// Whether it is a slot of the schedule (or the one-time snapshot), which moves the
    /// schedule on; false for one only asked for by a run-now token.
    pub scheduled: bool,
}

/// What the reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The snapshot to take.
    pub fire: Option<Firing>,
    /// The status to write (when it differs from the previous one).
    pub status: EtcdBackupConfigStatus,
    /// When to look again.
    pub requeue_after: Option<Duration>,
}

/// How soon to look again when the cache is behind this process's own write (the write's
/// watch event normally comes first).
pub const CACHE_CATCH_UP: Duration = Duration::from_secs(1);

impl Live {
    /// The name of the snapshot this process runs or ran.
    fn name(&self) -> Option<&str> {
        match self {
            Live::Idle => None,
            Live::Running(name) => Some(name),
            Live::Finished(finished) => Some(&finished.record.backup_name),
        }
    }
}

/// Decides; see the module docs.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let previous = input.previous;
    if let Some(name) = input.live.name()
        && !previous.last_backups.iter().any(|r| r.backup_name == name)
    {
        // The cache does not show the write that announced this snapshot yet.
        return Plan {
            fire: None,
            status: previous.clone(),
            requeue_after: Some(CACHE_CATCH_UP),
        };
    }
    let mut records = previous.last_backups.clone();
    match &input.live {
        Live::Finished(finished) => apply_finished(&mut records, finished),
        Live::Idle => {
            for record in records.iter_mut().filter(|r| !r.backup_phase.is_terminal()) {
                record.backup_phase = Phase::Failed;
                record.backup_finished_time = Some(input.now);
                record.message = Some(INTERRUPTED.into());
            }
        }
        Live::Running(_) => {}
    }

    let due = schedule::due(&Timing {
        schedule: input.spec.schedule.as_ref(),
        paused: false,
        last_fired: previous.last_schedule_time,
        created: input.created,
        now: input.now,
    });
    // A finished snapshot's outcome is written (and released) before the next one starts.
    let can_fire = input.blocked.is_none() && input.live == Live::Idle;
    let fire = match (due, input.run_now) {
        (Due::Now(at), _) if can_fire => Some(Firing {
            at,
            name: match input.spec.schedule {
                Some(_) => scheduled_backup_name(input.name, at),
                None => input.name.to_string(),
            },
            scheduled: true,
        }),
        // Run now: named with its time, the schedule's own slots untouched.
        (_, Some(_)) if can_fire => Some(Firing {
            at: input.now,
            name: scheduled_backup_name(input.name, input.now),
            scheduled: false,
        }),
        _ => None,
    };
    if let Some(f) = &fire {
        // Rotated-out records made their point at the last run.
        records.retain(|r| r.delete_phase.is_none());
        records.insert(
            0,
            EtcdBackupRecord {
                scheduled_time: Some(f.at),
                backup_name: f.name.clone(),
                backup_phase: Phase::InProgress,
                ..EtcdBackupRecord::default()
            },
        );
    }
    // Bounded by keep: what is kept in storage (plus the one being taken, which rotation makes
    // room for when it completed), and the ones rotation just deleted.
    let keep = input.spec.keep.get() as usize;
    let bound = keep
        + usize::from(
            records
                .first()
                .is_some_and(|r| !r.backup_phase.is_terminal()),
        );
    let kept = records.iter().filter(|r| r.delete_phase.is_none()).count();
    if kept > bound {
        let mut seen = 0;
        records.retain(|r| {
            if r.delete_phase.is_some() {
                return true;
            }
            seen += 1;
            seen <= bound
        });
    }

    let last_schedule_time = fire
        .as_ref()
        .filter(|f| f.scheduled)
        .map(|f| f.at)
        .or(previous.last_schedule_time);
    let next = match (due, &fire) {
        (Due::Later(at), _) => Some(at),
        (Due::Now(_), Some(f)) if f.scheduled => {
            schedule::next_after(input.spec.schedule.as_ref(), f.at)
        }
        // Due, but waiting (blocked, or the previous snapshot still runs).
        (Due::Now(at), _) => Some(at),
        (Due::Never, _) => None,
    };
    let ready = match &input.blocked {
        Some((reason, message)) => Condition::unmet(READY, reason, message.clone()),
        None => Condition::met(
            READY,
            "Ready",
            match (&input.spec.schedule, next) {
                (Some(_), Some(next)) => format!(
                    "snapshots of {}'s etcd, keeping {keep}; next at {next}",
                    input.spec.cluster
                ),
                (Some(_), None) => "the schedule fires no more".to_string(),
                (None, _) => format!("one snapshot of {}'s etcd", input.spec.cluster),
            },
        ),
    }
    .at(input.now, input.generation);
    let last_run_now_token = match (&fire, input.run_now) {
        (Some(_), Some(token)) => Some(token.to_string()),
        _ => previous.last_run_now_token.clone(),
    };
    let status = EtcdBackupConfigStatus {
        observed_generation: input.generation,
        last_run_now_token,
        last_schedule_time,
        next_schedule_time: next,
        last_backups: records,
        conditions: merge_conditions(&previous.conditions, vec![ready]),
    };
    let requeue_after =
        next.map(|at| Duration::try_from(at.duration_since(input.now)).unwrap_or(Duration::ZERO));
    Plan {
        fire,
        status,
        requeue_after,
    }
}

/// Writes a finished snapshot's outcome and its rotation into the records.
fn apply_finished(records: &mut [EtcdBackupRecord], finished: &EtcdFinished) {
    for record in records.iter_mut() {
        if record.backup_name == finished.record.backup_name {
            *record = finished.record.clone();
        } else if finished.deleted.contains(&record.backup_name) {
            record.delete_phase = Some(Phase::Completed);
            record.delete_finished_time = Some(finished.at);
        } else if let Some((_, why)) = finished
            .refused
            .iter()
            .find(|(name, _)| *name == record.backup_name)
        {
            record.delete_phase = Some(Phase::Failed);
            record.delete_finished_time = Some(finished.at);
            record.message = Some(format!("rotation could not delete it: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::EtcdBackupConfigSpec;
    use crate::api::status::find;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(json: serde_json::Value) -> ValidEtcdBackupConfig {
        serde_json::from_value::<EtcdBackupConfigSpec>(json)
            .unwrap()
            .validate("etcd")
            .unwrap()
    }

    fn input<'a>(
        spec: &'a ValidEtcdBackupConfig,
        previous: &'a EtcdBackupConfigStatus,
        now: &str,
        live: Live,
    ) -> PlanInput<'a> {
        PlanInput {
            name: "etcd",
            generation: Some(1),
            created: ts("2026-11-30T10:00:00Z"),
            now: ts(now),
            spec,
            previous,
            live,
            blocked: None,
            run_now: None,
        }
    }

    fn completed(record: &EtcdBackupRecord, at: &str) -> EtcdBackupRecord {
        EtcdBackupRecord {
            backup_phase: Phase::Completed,
            backup_finished_time: Some(ts(at)),
            ..record.clone()
        }
    }

    #[test]
    fn a_schedule_fires_records_in_progress_then_the_outcome_and_rotation() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 1m", "keep": 2}));
        let mut status = EtcdBackupConfigStatus::default();
        let mut names = Vec::new();
        for minute in 1..=3 {
            let now = format!("2026-11-30T10:0{minute}:00.2Z");
            let plan = plan(&input(&spec, &status, &now, Live::Idle));
            let fire = plan.fire.clone().expect("due every minute");
            assert_eq!(fire.at, ts(&format!("2026-11-30T10:0{minute}:00Z")));
            assert_eq!(fire.name, format!("etcd-2026113010{:02}00", minute));
            assert_eq!(plan.status.last_backups[0].backup_phase, Phase::InProgress);
            assert_eq!(
                plan.status.next_schedule_time,
                Some(ts(&format!("2026-11-30T10:0{}:00Z", minute + 1)))
            );
            names.push(fire.name.clone());
            // It ended; rotation (keep 2) deleted the oldest once there are three.
            let deleted = if minute == 3 {
                vec![names[0].clone()]
            } else {
                vec![]
            };
            let finished = EtcdFinished {
                record: completed(&plan.status.last_backups[0], &now),
                deleted,
                refused: vec![],
                at: ts(&now),
            };
            let written = super::plan(&input(
                &spec,
                &plan.status,
                &now,
                Live::Finished(Box::new(finished)),
            ));
            assert_eq!(written.fire, None, "the next slot is a minute away");
            status = written.status;
        }
        let shown: Vec<(&str, Phase, Option<Phase>)> = status
            .last_backups
            .iter()
            .map(|r| (r.backup_name.as_str(), r.backup_phase, r.delete_phase))
            .collect();
        assert_eq!(
            shown,
            [
                (names[2].as_str(), Phase::Completed, None),
                (names[1].as_str(), Phase::Completed, None),
                (names[0].as_str(), Phase::Completed, Some(Phase::Completed)),
            ]
        );
        // The next firing drops the rotated-out record.
        let next = plan(&input(&spec, &status, "2026-11-30T10:04:00.1Z", Live::Idle));
        assert_eq!(next.status.last_backups.len(), 3);
        assert!(
            next.status
                .last_backups
                .iter()
                .all(|r| r.delete_phase.is_none())
        );
    }

    #[test]
    fn missed_slots_run_once_and_a_running_snapshot_is_not_doubled() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 1m"}));
        let previous = EtcdBackupConfigStatus {
            last_schedule_time: Some(ts("2026-11-30T10:01:00Z")),
            ..EtcdBackupConfigStatus::default()
        };
        let late = plan(&input(&spec, &previous, "2026-11-30T10:09:30Z", Live::Idle));
        assert_eq!(
            late.fire.unwrap().at,
            ts("2026-11-30T10:09:00Z"),
            "the latest slot, once"
        );
        let busy = plan(&input(
            &spec,
            &late.status,
            "2026-11-30T10:09:30Z",
            Live::Running(late.status.last_backups[0].backup_name.clone()),
        ));
        assert_eq!(busy.fire, None);
        assert_eq!(busy.status.last_backups[0].backup_phase, Phase::InProgress);
    }

    #[test]
    fn a_cache_behind_this_process_own_write_is_waited_for_not_acted_on() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 1m"}));
        let before = EtcdBackupConfigStatus {
            last_schedule_time: Some(ts("2026-11-30T10:00:00Z")),
            ..EtcdBackupConfigStatus::default()
        };
        let fired = plan(&input(&spec, &before, "2026-11-30T10:01:00.1Z", Live::Idle));
        let record = fired.status.last_backups[0].clone();
        let finished = EtcdFinished {
            record: EtcdBackupRecord {
                backup_phase: Phase::Failed,
                message: Some("etcd at 127.0.0.1:1 refused".into()),
                ..record.clone()
            },
            deleted: vec![],
            refused: vec![],
            at: ts("2026-11-30T10:01:00.3Z"),
        };
        // The snapshot ended before the cache saw the status announcing it: nothing is
        // decided on the old view (which lacks the record and would fire the slot again).
        for live in [
            Live::Running(record.backup_name.clone()),
            Live::Finished(Box::new(finished.clone())),
        ] {
            let behind = plan(&input(&spec, &before, "2026-11-30T10:01:00.4Z", live));
            assert_eq!(behind.fire, None);
            assert_eq!(behind.status, before, "nothing written from a stale view");
            assert_eq!(behind.requeue_after, Some(CACHE_CATCH_UP));
        }
        // Caught up: the outcome is written as it happened, not called interrupted.
        let written = plan(&input(
            &spec,
            &fired.status,
            "2026-11-30T10:01:00.5Z",
            Live::Finished(Box::new(finished.clone())),
        ));
        assert_eq!(written.status.last_backups[0], finished.record);
        // Written and seen: deciding again changes nothing, so the outcome can be released.
        let seen = plan(&input(
            &spec,
            &written.status,
            "2026-11-30T10:01:00.6Z",
            Live::Finished(Box::new(finished)),
        ));
        assert_eq!(seen.status, written.status);
        assert_eq!(seen.fire, None, "the next slot waits for the release");
    }

    #[test]
    fn a_snapshot_cut_off_by_a_restart_ends_failed() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@daily"}));
        let previous = EtcdBackupConfigStatus {
            last_schedule_time: Some(ts("2026-11-30T00:00:00Z")),
            last_backups: vec![EtcdBackupRecord {
                backup_name: "etcd-20261130000000".into(),
                backup_phase: Phase::InProgress,
                ..EtcdBackupRecord::default()
            }],
            ..EtcdBackupConfigStatus::default()
        };
        let plan = plan(&input(&spec, &previous, "2026-11-30T10:00:00Z", Live::Idle));
        assert_eq!(plan.fire, None);
        let record = &plan.status.last_backups[0];
        assert_eq!(record.backup_phase, Phase::Failed);
        assert_eq!(record.message.as_deref(), Some(INTERRUPTED));
    }

    #[test]
    fn a_blocked_config_fires_nothing_and_says_why() {
        let spec = spec(serde_json::json!({"cluster": "c1"}));
        let previous = EtcdBackupConfigStatus::default();
        let mut blocked = input(&spec, &previous, "2026-11-30T10:00:00Z", Live::Idle);
        blocked.blocked = Some(("EtcdNotConfigured".into(), "set spec.etcd".into()));
        let plan = plan(&blocked);
        assert_eq!(plan.fire, None);
        let ready = find(&plan.status.conditions, READY).unwrap();
        assert_eq!(
            (ready.is_true(), ready.reason.as_str()),
            (false, "EtcdNotConfigured")
        );
        // Fixed: the one-time snapshot runs under the config's own name.
        let fixed = super::plan(&input(&spec, &previous, "2026-11-30T10:00:05Z", Live::Idle));
        assert_eq!(fixed.fire.unwrap().name, "etcd");
    }

    #[test]
    fn a_run_now_token_takes_one_snapshot_without_moving_the_schedule() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@daily"}));
        let previous = EtcdBackupConfigStatus {
            last_schedule_time: Some(ts("2026-11-30T00:00:00Z")),
            ..EtcdBackupConfigStatus::default()
        };
        let mut asked = input(&spec, &previous, "2026-11-30T10:30:00Z", Live::Idle);
        asked.run_now = Some("before-upgrade");
        let plan = plan(&asked);
        let fire = plan.fire.expect("runs now");
        assert!(!fire.scheduled);
        assert_eq!(fire.name, "etcd-20261130103000");
        assert_eq!(
            plan.status.last_run_now_token.as_deref(),
            Some("before-upgrade")
        );
        assert_eq!(
            plan.status.last_schedule_time,
            Some(ts("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            plan.status.next_schedule_time,
            Some(ts("2026-12-01T00:00:00Z"))
        );
        // While it runs, nothing more starts.
        let mut again = input(
            &spec,
            &plan.status,
            "2026-11-30T10:30:01Z",
            Live::Running(fire.name.clone()),
        );
        again.run_now = Some("other");
        assert_eq!(super::plan(&again).fire, None);
    }
}
