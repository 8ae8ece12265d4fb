//! The pure decision of the kinds that run one backup at a time and record their latest runs
//! (EtcdBackupConfig, ManagementBackup): write the outcome of the run that ended, mark one cut
//! off by a restart `Failed`, and fire the next one when it is due.
//!
//! The schedule rule is the controller's one ([`schedule::due`]): the most recent missed slot
//! runs once. A run is recorded (`InProgress`) before it starts; rotation after it marks the
//! runs it deleted, and the list is bounded by `keep`. A new run-now token takes one run at
//! once, named with its time, without moving the schedule; an owed release backup (a new
//! controller release) goes before both.
//!
//! The status read comes from the controller's cache, which can be behind the status this
//! process just wrote. A decision on such a view would call its own run interrupted or fire a
//! slot twice, so while the cache does not show the live run's record yet, the plan waits for
//! it; and an outcome is released only once the cache shows it written.

use std::collections::BTreeMap;
use std::time::Duration;

use backup_core::{Phase, Schedule, scheduled_backup_name};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::reconcile::schedule::{self, Due, Timing};
use crate::runs::RunFinished;
use backup_api::status::{Condition, READY, merge_conditions};
use backup_api::{BackupRecord, RecordedRunsStatus};

/// The message of a run cut off by a restart.
pub const INTERRUPTED: &str = "interrupted: the controller stopped (restart or lost leadership) \
    while this ran; nothing was stored (a backup is listed only once complete)";

/// The message of a run recorded unfinished that storage holds complete.
pub const FOUND_STORED: &str = "found in storage, complete, after the controller restarted";

/// How soon to look again when the cache is behind this process's own write (the write's
/// watch event normally comes first).
pub const CACHE_CATCH_UP: Duration = Duration::from_secs(1);

/// What this process knows of the object's run.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// None runs here.
    Idle,
    /// One runs here, under this name.
    Running(String),
    /// One ended here; its outcome is not in the status yet.
    Finished(Box<RunFinished>),
}

impl Live {
    /// The name of the run this process runs or ran.
    fn name(&self) -> Option<&str> {
        match self {
            Live::Idle => None,
            Live::Running(name) => Some(name),
            Live::Finished(finished) => Some(&finished.record.backup_name),
        }
    }
}

/// What the decision reads.
pub struct PlanInput<'a> {
    /// The object's name (the base of its runs' names).
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// When it was created.
    pub created: Timestamp,
    /// Now.
    pub now: Timestamp,
    /// When it runs; `None`: once.
    pub schedule: Option<&'a (Schedule, TimeZone)>,
    /// How many completed runs are kept.
    pub keep: usize,
    /// What the runs are, for the `Ready` message: ("snapshots of c1's etcd", "one snapshot
    /// of c1's etcd") for a schedule and for a one-time object.
    pub describe: (&'a str, &'a str),
    /// The status as last written.
    pub previous: &'a RecordedRunsStatus,
    /// The phases storage holds for the runs recorded unfinished that this process does not
    /// run (see [`unfinished_elsewhere`]); `None` when storage could not be asked.
    pub stored: Option<&'a BTreeMap<String, Phase>>,
    /// The run of this process.
    pub live: Live,
    /// Why runs cannot start: (reason, message).
    pub blocked: Option<(String, String)>,
    /// A `backupfleet.dev/run-now` token not served yet.
    pub run_now: Option<&'a str>,
    /// A release backup owed: the new release's name.
    pub release: Option<&'a str>,
}

/// Why a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringKind {
    /// A slot of the schedule (or the one-time run): moves the schedule on.
    Scheduled,
    /// A run-now token.
    RunNow,
    /// A new release of the controller.
    Release,
}

/// A run to start, after the status announcing it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The slot (or the moment).
    pub at: Timestamp,
    /// The run's name.
    pub name: String,
    /// Why it runs.
    pub kind: FiringKind,
}

/// What the reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The run to start.
    pub fire: Option<Firing>,
    /// The status to write (when it differs from the previous one).
    pub status: RecordedRunsStatus,
    /// When to look again.
    pub requeue_after: Option<Duration>,
}

/// The runs recorded unfinished that this process does not run: what storage must be asked
/// about before [`plan`] decides.
pub fn unfinished_elsewhere(previous: &RecordedRunsStatus, live: &Live) -> Vec<String> {
    match live {
        Live::Idle => previous
            .last_backups
            .iter()
            .filter(|r| !r.backup_phase.is_terminal())
            .map(|r| r.backup_name.clone())
            .collect(),
        _ => Vec::new(),
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
        // Recorded unfinished, and not running here: a restart (or a management cluster
        // restored from a backup taken while it ran). What storage holds ended; the rest was
        // cut off. Unknown (storage not reachable): left as recorded until it can be looked at.
        Live::Idle => {
            if let Some(stored) = input.stored {
                for record in records.iter_mut().filter(|r| !r.backup_phase.is_terminal()) {
                    match stored.get(&record.backup_name) {
                        Some(phase) => {
                            record.backup_phase = *phase;
                            record.message = Some(FOUND_STORED.into());
                        }
                        None => {
                            record.backup_phase = Phase::Failed;
                            record.backup_finished_time = Some(input.now);
                            record.message = Some(INTERRUPTED.into());
                        }
                    }
                }
            }
        }
        Live::Running(_) => {}
    }

    let due = schedule::due(&Timing {
        schedule: input.schedule,
        paused: false,
        last_fired: previous.last_schedule_time,
        created: input.created,
        now: input.now,
    });
    // A finished run's outcome is written (and released) before the next one starts.
    let can_fire = input.blocked.is_none() && input.live == Live::Idle;
    let fire = match (input.release, due, input.run_now) {
        _ if !can_fire => None,
        (Some(release), _, _) => Some(Firing {
            at: input.now,
            name: format!("{}-{release}", input.name),
            kind: FiringKind::Release,
        }),
        (None, Due::Now(at), _) => Some(Firing {
            at,
            name: match input.schedule {
                Some(_) => scheduled_backup_name(input.name, at),
                None => input.name.to_string(),
            },
            kind: FiringKind::Scheduled,
        }),
        // Run now: named with its time, the schedule's own slots untouched.
        (None, _, Some(_)) => Some(Firing {
            at: input.now,
            name: scheduled_backup_name(input.name, input.now),
            kind: FiringKind::RunNow,
        }),
        _ => None,
    };
    if let Some(f) = &fire {
        // Rotated-out records made their point at the last run.
        records.retain(|r| r.delete_phase.is_none());
        records.insert(
            0,
            BackupRecord {
                scheduled_time: Some(f.at),
                backup_name: f.name.clone(),
                backup_phase: Phase::InProgress,
                ..BackupRecord::default()
            },
        );
    }
    // Bounded by keep: what is kept in storage (plus the one being taken, which rotation makes
    // room for when it completed), and the ones rotation just deleted.
    let keep = input.keep;
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
        .filter(|f| f.kind == FiringKind::Scheduled)
        .map(|f| f.at)
        .or(previous.last_schedule_time);
    let next = match (due, &fire) {
        (Due::Later(at), _) => Some(at),
        (Due::Now(_), Some(f)) if f.kind == FiringKind::Scheduled => {
            schedule::next_after(input.schedule, f.at)
        }
        // Due, but waiting (blocked, a release backup first, or the previous run still runs).
        (Due::Now(at), _) => Some(at),
        (Due::Never, _) => None,
    };
    let ready = match &input.blocked {
        Some((reason, message)) => Condition::unmet(READY, reason, message.clone()),
        None => Condition::met(
            READY,
            "Ready",
            match (input.schedule, next) {
                (Some(_), Some(next)) => {
                    format!("{}, keeping {keep}; next at {next}", input.describe.0)
                }
                (Some(_), None) => "the schedule fires no more".to_string(),
                (None, _) => input.describe.1.to_string(),
            },
        ),
    }
    .at(input.now, input.generation);
    // A scheduled run serves a pending token too; a release backup does not.
    let last_run_now_token = match (&fire, input.run_now) {
        (Some(f), Some(token)) if f.kind != FiringKind::Release => Some(token.to_string()),
        _ => previous.last_run_now_token.clone(),
    };
    let status = RecordedRunsStatus {
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

/// Writes a finished run's outcome and its rotation into the records.
fn apply_finished(records: &mut [BackupRecord], finished: &RunFinished) {
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
    use backup_api::EtcdBackupConfigSpec;
    use backup_api::etcd_backup_config::ValidEtcdBackupConfig;
    use backup_api::status::find;

    static NOTHING_STORED: BTreeMap<String, Phase> = BTreeMap::new();

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
        previous: &'a RecordedRunsStatus,
        now: &str,
        live: Live,
    ) -> PlanInput<'a> {
        PlanInput {
            name: "etcd",
            generation: Some(1),
            created: ts("2026-11-30T10:00:00Z"),
            now: ts(now),
            schedule: spec.schedule.as_ref(),
            keep: spec.keep.get() as usize,
            describe: ("snapshots of c1's etcd", "one snapshot of c1's etcd"),
            previous,
            stored: Some(&NOTHING_STORED),
            live,
            blocked: None,
            run_now: None,
            release: None,
        }
    }

    fn completed(record: &BackupRecord, at: &str) -> BackupRecord {
        BackupRecord {
            backup_phase: Phase::Completed,
            backup_finished_time: Some(ts(at)),
            ..record.clone()
        }
    }

    #[test]
    fn a_schedule_fires_records_in_progress_then_the_outcome_and_rotation() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 1m", "keep": 2}));
        let mut status = RecordedRunsStatus::default();
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
            let finished = RunFinished {
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
        let previous = RecordedRunsStatus {
            last_schedule_time: Some(ts("2026-11-30T10:01:00Z")),
            ..RecordedRunsStatus::default()
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
        let before = RecordedRunsStatus {
            last_schedule_time: Some(ts("2026-11-30T10:00:00Z")),
            ..RecordedRunsStatus::default()
        };
        let fired = plan(&input(&spec, &before, "2026-11-30T10:01:00.1Z", Live::Idle));
        let record = fired.status.last_backups[0].clone();
        let finished = RunFinished {
            record: BackupRecord {
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
        let previous = RecordedRunsStatus {
            last_schedule_time: Some(ts("2026-11-30T00:00:00Z")),
            last_backups: vec![BackupRecord {
                backup_name: "etcd-20261130000000".into(),
                backup_phase: Phase::InProgress,
                ..BackupRecord::default()
            }],
            ..RecordedRunsStatus::default()
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
        let previous = RecordedRunsStatus::default();
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
        let previous = RecordedRunsStatus {
            last_schedule_time: Some(ts("2026-11-30T00:00:00Z")),
            ..RecordedRunsStatus::default()
        };
        let mut asked = input(&spec, &previous, "2026-11-30T10:30:00Z", Live::Idle);
        asked.run_now = Some("before-upgrade");
        let plan = plan(&asked);
        let fire = plan.fire.expect("runs now");
        assert_eq!(fire.kind, FiringKind::RunNow);
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

    #[test]
    fn an_owed_release_backup_goes_first_and_leaves_the_schedule_and_tokens_alone() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 1m"}));
        let previous = RecordedRunsStatus {
            last_schedule_time: Some(ts("2026-11-30T10:00:00Z")),
            ..RecordedRunsStatus::default()
        };
        let mut owed = input(&spec, &previous, "2026-11-30T10:01:00.5Z", Live::Idle);
        owed.release = Some("1-2-0");
        owed.run_now = Some("token");
        let plan = plan(&owed);
        let fire = plan.fire.expect("the release backup runs");
        assert_eq!(fire.name, "etcd-1-2-0");
        assert_eq!(fire.kind, FiringKind::Release);
        // The due slot and the token wait for it.
        assert_eq!(
            plan.status.last_schedule_time,
            Some(ts("2026-11-30T10:00:00Z"))
        );
        assert_eq!(
            plan.status.next_schedule_time,
            Some(ts("2026-11-30T10:01:00Z"))
        );
        assert_eq!(plan.status.last_run_now_token, None);
    }

    #[test]
    fn an_unfinished_record_storage_holds_ended_and_one_it_lacks_was_cut_off() {
        let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@daily"}));
        let unfinished = |name: &str| BackupRecord {
            backup_name: name.into(),
            backup_phase: Phase::InProgress,
            ..BackupRecord::default()
        };
        let previous = RecordedRunsStatus {
            last_schedule_time: Some(ts("2026-11-30T00:00:00Z")),
            last_backups: vec![unfinished("etcd-1-1-0"), unfinished("etcd-20261130000000")],
            ..RecordedRunsStatus::default()
        };
        assert_eq!(
            unfinished_elsewhere(&previous, &Live::Idle),
            ["etcd-1-1-0", "etcd-20261130000000"]
        );
        assert!(unfinished_elsewhere(&previous, &Live::Running("etcd-1-1-0".into())).is_empty());
        let stored = BTreeMap::from([("etcd-1-1-0".to_string(), Phase::Completed)]);
        let mut looked = input(&spec, &previous, "2026-11-30T10:00:00Z", Live::Idle);
        looked.stored = Some(&stored);
        let decided = plan(&looked);
        let phases: Vec<(Phase, Option<&str>)> = decided
            .status
            .last_backups
            .iter()
            .map(|r| (r.backup_phase, r.message.as_deref()))
            .collect();
        assert_eq!(
            phases,
            [
                (Phase::Completed, Some(FOUND_STORED)),
                (Phase::Failed, Some(INTERRUPTED))
            ]
        );
        // Storage not reachable: nothing is called interrupted on a guess.
        let mut unknown = input(&spec, &previous, "2026-11-30T10:00:00Z", Live::Idle);
        unknown.stored = None;
        assert_eq!(plan(&unknown).status.last_backups, previous.last_backups);
    }
}
