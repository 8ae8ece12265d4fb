use super::*;
use std::time::Duration;

use backup_core::{Phase, Schedule};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::reconcile::Blocked;
use crate::reconcile::recorded_runs::{Live, PlanInput as RunsInput};
use backup_api::status::{Condition, READY};
use backup_api::{BackupRecord, RecordedRunsStatus};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A ManagementBackup every ten minutes, last fired at 10:00, recorded at release 1.1.0,
/// reconciled by a controller of release `1.2.0+b`.
struct Case {
    schedule: (Schedule, TimeZone),
    previous: RecordedRunsStatus,
    now: Timestamp,
    blocked: Option<Blocked>,
    last_release: Option<&'static str>,
    on_upgrade: bool,
}

impl Case {
    fn new(now: &str) -> Self {
        Case {
            schedule: (Schedule::parse("@every 10m").unwrap(), TimeZone::UTC),
            previous: RecordedRunsStatus {
                last_schedule_time: Some(ts("2026-11-30T10:00:00Z")),
                ..RecordedRunsStatus::default()
            },
            now: ts(now),
            blocked: None,
            last_release: Some("1.1.0"),
            on_upgrade: true,
        }
    }

    fn plan(&self) -> Decision<ManagementBackupStatus> {
        plan(&PlanInput {
            runs: RunsInput {
                name: "mgmt",
                generation: Some(1),
                created: ts("2026-11-30T09:00:00Z"),
                now: self.now,
                schedule: Some(&self.schedule),
                keep: 20,
                describe: (
                    "backups of the management cluster",
                    "one backup of the management cluster",
                ),
                previous: &self.previous,
                stored: None,
                live: Live::Idle,
                blocked: self.blocked.clone(),
                run_now: None,
            },
            last_release: self.last_release,
            on_upgrade: self.on_upgrade,
            release: "1.2.0+b",
            release_slug: "1.2.0-b",
        })
    }

    /// The runs' status when nothing fires: `Ready` with `ready`, the next slot at 10:10.
    fn quiet(&self, ready: Condition) -> RecordedRunsStatus {
        RecordedRunsStatus {
            observed_generation: Some(1),
            next_schedule_time: Some(ts("2026-11-30T10:10:00Z")),
            conditions: vec![ready.at(self.now, Some(1))],
            ..self.previous.clone()
        }
    }
}

fn ready() -> Condition {
    Condition::met(
        READY,
        "Ready",
        "backups of the management cluster, keeping 20; next at 2026-11-30T10:10:00Z",
    )
}

#[test]
fn a_new_release_owes_one_backup_before_the_due_slot_and_is_recorded_as_it_starts() {
    let case = Case::new("2026-11-30T10:10:00.5Z");
    let slot = ts("2026-11-30T10:10:00Z");
    assert_eq!(
        case.plan(),
        Decision {
            fire: Some(Firing {
                at: case.now,
                name: "mgmt-1.2.0-b".into(),
                kind: FiringKind::Release,
            }),
            status: ManagementBackupStatus {
                runs: RecordedRunsStatus {
                    observed_generation: Some(1),
                    last_run_now_token: None,
                    // The due slot waits for the release backup.
                    last_schedule_time: Some(ts("2026-11-30T10:00:00Z")),
                    next_schedule_time: Some(slot),
                    last_backups: vec![BackupRecord {
                        scheduled_time: Some(case.now),
                        backup_name: "mgmt-1.2.0-b".into(),
                        backup_phase: Phase::InProgress,
                        ..BackupRecord::default()
                    }],
                    conditions: vec![
                        Condition::met(
                            READY,
                            "Ready",
                            format!(
                                "backups of the management cluster, keeping 20; next at {slot}"
                            ),
                        )
                        .at(case.now, Some(1))
                    ],
                },
                last_release: Some("1.2.0+b".into()),
            },
            write: true,
            release: None,
            requeue_after: Some(Duration::ZERO),
        }
    );
}

#[test]
fn an_owed_release_backup_waits_out_a_block_with_the_old_release_recorded() {
    let mut case = Case::new("2026-11-30T10:00:30Z");
    let blocked = Blocked::new("EncryptionRequired", "add recipients");
    case.blocked = Some(blocked.clone());
    assert_eq!(
        case.plan(),
        Decision {
            fire: None,
            status: ManagementBackupStatus {
                runs: case.quiet(blocked.condition(READY)),
                last_release: Some("1.1.0".into()),
            },
            write: true,
            release: None,
            // The next slot is 9m30s away; the fix is looked for sooner.
            requeue_after: Some(BLOCKED_RECHECK),
        }
    );
    // A slot sooner than the recheck is looked at on time.
    let mut soon = Case::new("2026-11-30T10:09:50Z");
    soon.blocked = Some(blocked);
    assert_eq!(soon.plan().requeue_after, Some(Duration::from_secs(10)));
}

#[test]
fn a_first_release_or_one_without_on_upgrade_is_recorded_without_a_backup() {
    let mut first = Case::new("2026-11-30T10:00:30Z");
    first.last_release = None;
    let mut not_asked = Case::new("2026-11-30T10:00:30Z");
    not_asked.on_upgrade = false;
    for case in [first, not_asked] {
        assert_eq!(
            case.plan(),
            Decision {
                fire: None,
                status: ManagementBackupStatus {
                    runs: case.quiet(ready()),
                    last_release: Some("1.2.0+b".into()),
                },
                write: true,
                release: None,
                requeue_after: Some(Duration::from_secs(570)),
            }
        );
    }
}

#[test]
fn the_release_already_recorded_owes_nothing_and_writes_nothing_new() {
    let mut case = Case::new("2026-11-30T10:00:30Z");
    case.last_release = Some("1.2.0+b");
    case.previous = case.quiet(ready());
    assert_eq!(
        case.plan(),
        Decision {
            fire: None,
            status: ManagementBackupStatus {
                runs: case.previous.clone(),
                last_release: Some("1.2.0+b".into()),
            },
            write: false,
            release: None,
            requeue_after: Some(Duration::from_secs(570)),
        }
    );
}
