use super::*;
use backup_api::EtcdBackupConfigSpec;
use backup_api::etcd_backup_config::ValidEtcdBackupConfig;

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
    }
}

/// The plan with no release backup owed.
fn planned(input: &PlanInput<'_>) -> Plan {
    plan(input, None)
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
        let plan = planned(&input(&spec, &status, &now, Live::Idle));
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
        let written = planned(&input(
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
    let next = planned(&input(&spec, &status, "2026-11-30T10:04:00.1Z", Live::Idle));
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
    let late = planned(&input(&spec, &previous, "2026-11-30T10:09:30Z", Live::Idle));
    assert_eq!(
        late.fire.unwrap().at,
        ts("2026-11-30T10:09:00Z"),
        "the latest slot, once"
    );
    let busy = planned(&input(
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
    let fired = planned(&input(&spec, &before, "2026-11-30T10:01:00.1Z", Live::Idle));
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
        let behind = planned(&input(&spec, &before, "2026-11-30T10:01:00.4Z", live));
        assert_eq!(behind.fire, None);
        assert_eq!(behind.status, before, "nothing written from a stale view");
        assert_eq!(behind.requeue_after, Some(CACHE_CATCH_UP));
    }
    // Caught up: the outcome is written as it happened, not called interrupted.
    let written = planned(&input(
        &spec,
        &fired.status,
        "2026-11-30T10:01:00.5Z",
        Live::Finished(Box::new(finished.clone())),
    ));
    assert_eq!(written.status.last_backups[0], finished.record);
    // Written and seen: deciding again changes nothing, so the outcome can be released.
    let seen = planned(&input(
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
    let plan = planned(&input(&spec, &previous, "2026-11-30T10:00:00Z", Live::Idle));
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
    blocked.blocked = Some(Blocked::new("EtcdNotConfigured", "set spec.etcd"));
    let now = ts("2026-11-30T10:00:00Z");
    assert_eq!(
        planned(&blocked),
        Plan {
            fire: None,
            status: RecordedRunsStatus {
                observed_generation: Some(1),
                // The one-time run is due, and waits for the fix.
                next_schedule_time: Some(now),
                conditions: vec![
                    Condition::unmet(READY, "EtcdNotConfigured", "set spec.etcd").at(now, Some(1))
                ],
                ..RecordedRunsStatus::default()
            },
            requeue_after: Some(Duration::ZERO),
        }
    );
    // Fixed: the one-time snapshot runs under the config's own name.
    let fixed = planned(&input(&spec, &previous, "2026-11-30T10:00:05Z", Live::Idle));
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
    let plan = planned(&asked);
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
    assert_eq!(planned(&again).fire, None);
}

#[test]
fn an_owed_release_backup_goes_first_and_leaves_the_schedule_and_tokens_alone() {
    let spec = spec(serde_json::json!({"cluster": "c1", "schedule": "@every 1m"}));
    let previous = RecordedRunsStatus {
        last_schedule_time: Some(ts("2026-11-30T10:00:00Z")),
        ..RecordedRunsStatus::default()
    };
    let mut owed = input(&spec, &previous, "2026-11-30T10:01:00.5Z", Live::Idle);
    owed.run_now = Some("token");
    let plan = plan(&owed, Some("1-2-0"));
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
    let decided = planned(&looked);
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
    assert_eq!(planned(&unknown).status.last_backups, previous.last_backups);
}

/// A plan that fires nothing and looks again in a minute.
fn quiet(status: RecordedRunsStatus) -> Plan {
    Plan {
        fire: None,
        status,
        requeue_after: Some(Duration::from_secs(60)),
    }
}

fn finished(phase: Phase, message: Option<&str>) -> Live {
    Live::Finished(Box::new(RunFinished {
        record: BackupRecord {
            backup_name: "etcd-20261130100100".into(),
            backup_phase: phase,
            message: message.map(String::from),
            ..BackupRecord::default()
        },
        deleted: vec![],
        refused: vec![],
        at: ts("2026-11-30T10:01:05Z"),
    }))
}

#[test]
fn a_finished_run_is_released_only_once_the_status_read_shows_its_outcome() {
    let read = RecordedRunsStatus::default();
    let written = RecordedRunsStatus {
        observed_generation: Some(2),
        ..RecordedRunsStatus::default()
    };
    let live = finished(Phase::Failed, Some("etcd refused"));
    // Its outcome is being written: not released, looked at again as soon as the cache shows it.
    assert_eq!(
        decision(
            quiet(written.clone()),
            std::convert::identity,
            &read,
            &live,
            "Snapshot"
        ),
        Decision {
            fire: None,
            status: written.clone(),
            write: true,
            release: None,
            requeue_after: Some(CACHE_CATCH_UP),
        }
    );
    // The cache shows it: released, with a Warning, on the plan's own requeue.
    assert_eq!(
        decision(
            quiet(written.clone()),
            std::convert::identity,
            &written,
            &live,
            "Snapshot"
        ),
        Decision {
            fire: None,
            status: written.clone(),
            write: false,
            release: Some(Outcome {
                warning: true,
                reason: "SnapshotFailed".into(),
                note: "etcd-20261130100100 Failed: etcd refused".into(),
            }),
            requeue_after: Some(Duration::from_secs(60)),
        }
    );
}

#[test]
fn a_completed_run_is_told_as_such_and_nothing_is_released_when_none_ended() {
    let status = RecordedRunsStatus::default();
    let completed = finished(Phase::Completed, None);
    assert_eq!(
        decision(
            quiet(status.clone()),
            std::convert::identity,
            &status,
            &completed,
            "Backup"
        )
        .release,
        Some(Outcome {
            warning: false,
            reason: "BackupCompleted".into(),
            note: "etcd-20261130100100 Completed".into(),
        })
    );
    let changed = RecordedRunsStatus {
        observed_generation: Some(3),
        ..RecordedRunsStatus::default()
    };
    for live in [Live::Idle, Live::Running("etcd-20261130100100".into())] {
        assert_eq!(
            decision(
                quiet(changed.clone()),
                std::convert::identity,
                &status,
                &live,
                "Backup"
            ),
            Decision {
                fire: None,
                status: changed.clone(),
                write: true,
                release: None,
                requeue_after: Some(Duration::from_secs(60)),
            }
        );
    }
}

#[test]
fn a_refused_object_says_why_schedules_nothing_and_keeps_its_records() {
    let now = ts("2026-11-30T10:00:00Z");
    let record = BackupRecord {
        backup_name: "etcd-1".into(),
        backup_phase: Phase::Completed,
        ..BackupRecord::default()
    };
    let previous = RecordedRunsStatus {
        observed_generation: Some(1),
        last_run_now_token: Some("t".into()),
        last_schedule_time: Some(ts("2026-11-30T09:00:00Z")),
        next_schedule_time: Some(ts("2026-11-30T11:00:00Z")),
        last_backups: vec![record],
        conditions: vec![
            Condition::met(READY, "Ready", "fine").at(ts("2026-11-30T09:00:00Z"), Some(1)),
        ],
    };
    let blocked = Blocked::new("InvalidSpec", "spec.schedule: not a schedule");
    assert_eq!(
        refused(&previous, &blocked, now, Some(2)),
        RecordedRunsStatus {
            observed_generation: Some(2),
            next_schedule_time: None,
            conditions: vec![blocked.condition(READY).at(now, Some(2))],
            ..previous.clone()
        }
    );
}
