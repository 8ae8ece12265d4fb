use super::*;
use backup_api::ClusterBackupSpec;
use backup_api::status::find;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec(json: serde_json::Value) -> ValidClusterBackup {
    serde_json::from_value::<ClusterBackupSpec>(json)
        .unwrap()
        .validate()
        .unwrap()
}

fn view(name: &str, stored: Vec<StoredBackup>) -> ClusterView {
    ClusterView {
        name: name.into(),
        stored: Ok(stored),
        live: None,
    }
}

fn stored(name: &str, phase: Phase, started: &str) -> StoredBackup {
    StoredBackup {
        name: name.into(),
        phase,
        items_backed_up: 7,
        total_items: 7,
        started: Some(ts(started)),
        completed: Some(ts(started)),
        expiration: None,
        errors: u64::from(phase == Phase::PartiallyFailed),
        warnings: 0,
        labels: Default::default(),
    }
}

struct Case {
    spec: ValidClusterBackup,
    previous: ClusterBackupStatus,
    created: Timestamp,
    now: Timestamp,
    generation: i64,
    fired_here: Option<Timestamp>,
    location: Result<LocationFacts, Blocked>,
    known: Vec<String>,
    clusters: Vec<ClusterView>,
    run_now: Option<&'static str>,
    served_here: Option<&'static str>,
}

fn writable() -> Result<LocationFacts, Blocked> {
    Ok(LocationFacts {
        name: "main".into(),
        writable: true,
    })
}

impl Case {
    fn new(spec_json: serde_json::Value, now: &str) -> Self {
        Case {
            spec: spec(spec_json),
            previous: ClusterBackupStatus::default(),
            created: ts("2026-11-30T00:00:00Z"),
            now: ts(now),
            generation: 1,
            fired_here: None,
            location: writable(),
            known: vec!["c1".into(), "c2".into()],
            clusters: vec![view("c1", vec![]), view("c2", vec![])],
            run_now: None,
            served_here: None,
        }
    }

    fn plan(&self) -> Plan {
        plan(&PlanInput {
            name: "nightly",
            generation: Some(self.generation),
            created: self.created,
            now: self.now,
            spec: &self.spec,
            previous: &self.previous,
            fired_here: self.fired_here,
            location: self.location.clone(),
            known_clusters: &self.known,
            clusters: self.clusters.clone(),
            run_now_annotation: self.run_now,
            run_now_served_here: self.served_here,
        })
    }
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a Condition {
    find(&plan.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn a_one_time_backup_runs_once_on_every_cluster_under_its_own_name() {
    let case = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z");
    let plan = case.plan();
    let fire = plan.fire.clone().expect("fires at once");
    assert_eq!(fire.at, case.now);
    assert_eq!(
        fire.runs,
        vec![
            ("c1".to_string(), "nightly".to_string()),
            ("c2".to_string(), "nightly".to_string())
        ]
    );
    assert_eq!(plan.status.phase, Some(FleetPhase::InProgress));
    assert_eq!(plan.status.last_schedule_time, Some(case.now));
    assert_eq!(plan.status.next_schedule_time, None);
    assert_eq!(plan.requeue_after, None);
    assert_eq!(plan.status.last_run_generation, Some(1));
    let c1 = &plan.status.clusters[0];
    assert_eq!(c1.last_backup.as_ref().unwrap().name, "nightly");
    assert_eq!(c1.last_backup.as_ref().unwrap().phase, Phase::New);
    assert!(condition(&plan, READY).is_true());

    // Ran: the next reconcile does not fire again.
    let mut again = Case::new(serde_json::json!({}), "2026-11-30T09:05:00Z");
    again.previous = plan.status.clone();
    assert_eq!(again.plan().fire, None);
}

#[test]
fn an_edited_one_time_backup_is_not_rerun_and_says_why() {
    let first = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z").plan();
    let mut edited = Case::new(
        serde_json::json!({"template": {"includedNamespaces": ["shop"]}}),
        "2026-11-30T10:00:00Z",
    );
    edited.previous = first.status;
    edited.generation = 2;
    let plan = edited.plan();
    assert_eq!(plan.fire, None);
    let c = condition(&plan, IMMUTABLE);
    assert!(c.is_true());
    assert_eq!(c.reason, "OneTimeBackupAlreadyRan");
    assert!(
        c.message.contains("create a new ClusterBackup"),
        "{}",
        c.message
    );
}

#[test]
fn a_schedule_waits_for_its_first_slot_and_asks_to_be_woken_then() {
    let case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T00:10:00Z",
    );
    let plan = case.plan();
    assert_eq!(plan.fire, None);
    assert_eq!(
        plan.status.next_schedule_time,
        Some(ts("2026-11-30T00:20:00Z"))
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(600)));
    assert_eq!(plan.status.phase, Some(FleetPhase::New));
}

#[test]
fn a_due_slot_fires_named_after_the_slot_and_schedules_the_next() {
    let case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T00:20:00.300Z",
    );
    let plan = case.plan();
    let fire = plan.fire.expect("due");
    assert_eq!(fire.at, ts("2026-11-30T00:20:00Z"));
    assert_eq!(fire.runs[0].1, "nightly-20261130002000");
    assert_eq!(
        plan.status.next_schedule_time,
        Some(ts("2026-11-30T00:40:00Z"))
    );
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_millis(19 * 60_000 + 59_700))
    );
}

#[test]
fn after_downtime_the_most_recent_missed_slot_runs_once() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T03:05:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T00:00:00Z"));
    let plan = case.plan();
    assert_eq!(plan.fire.unwrap().at, ts("2026-11-30T03:00:00Z"));
    assert_eq!(
        plan.status.next_schedule_time,
        Some(ts("2026-11-30T03:20:00Z"))
    );

    let mut cron = Case::new(
        serde_json::json!({"schedule": "0 2 * * *"}),
        "2026-12-03T10:00:00Z",
    );
    cron.previous.last_schedule_time = Some(ts("2026-11-30T02:00:00Z"));
    let plan = cron.plan();
    assert_eq!(plan.fire.unwrap().at, ts("2026-12-03T02:00:00Z"));
    assert_eq!(
        plan.status.next_schedule_time,
        Some(ts("2026-12-04T02:00:00Z"))
    );
}

#[test]
fn cron_fields_are_read_in_the_time_zone() {
    let case = Case::new(
        serde_json::json!({"schedule": "0 2 * * *", "timeZone": "Europe/Berlin"}),
        "2026-11-30T00:30:00Z",
    );
    // 02:00 in Berlin in winter is 01:00 UTC.
    assert_eq!(
        case.plan().status.next_schedule_time,
        Some(ts("2026-11-30T01:00:00Z"))
    );
}

#[test]
fn a_paused_schedule_starts_nothing_and_plans_nothing() {
    let case = Case::new(
        serde_json::json!({"schedule": "@every 20m", "paused": true}),
        "2026-11-30T05:00:00Z",
    );
    let plan = case.plan();
    assert_eq!(plan.fire, None);
    assert_eq!(plan.status.next_schedule_time, None);
    assert_eq!(plan.requeue_after, None);
    assert!(condition(&plan, READY).message.contains("paused"));
}

#[test]
fn a_blocked_backup_fires_nothing_and_keeps_its_slot_for_when_it_is_fixed() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T00:25:00Z",
    );
    case.location = Err(Blocked::new(
        "LocationNotFound",
        "StorageLocation \"main\" does not exist",
    ));
    let plan = case.plan();
    assert_eq!(plan.fire, None);
    assert_eq!(plan.status.last_schedule_time, None);
    let ready = condition(&plan, READY);
    assert!(!ready.is_true());
    assert_eq!(ready.reason, "LocationNotFound");

    case.location = writable();
    assert_eq!(case.plan().fire.unwrap().at, ts("2026-11-30T00:20:00Z"));
}

#[test]
fn no_selected_cluster_is_a_condition_and_no_run() {
    let mut case = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z");
    case.clusters.clear();
    let plan = case.plan();
    assert_eq!(plan.fire, None);
    let ready = condition(&plan, READY);
    assert_eq!(ready.reason, "NoClustersSelected");
    assert!(ready.message.contains("selector"), "{}", ready.message);
}

#[test]
fn unknown_names_are_reported_while_the_known_clusters_are_backed_up() {
    let case = Case::new(
        serde_json::json!({"clusters": {"names": ["c1", "c2", "c9"]}}),
        "2026-11-30T09:00:00Z",
    );
    let plan = case.plan();
    assert_eq!(plan.fire.as_ref().unwrap().runs.len(), 2);
    let ready = condition(&plan, READY);
    assert_eq!(ready.reason, "ClustersNotFound");
    assert!(ready.message.contains("c9"));
}

#[test]
fn status_is_rebuilt_from_storage() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:10:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    case.clusters = vec![
        view(
            "c1",
            vec![
                stored(
                    "nightly-20261130004000",
                    Phase::Completed,
                    "2026-11-30T00:40:00Z",
                ),
                stored(
                    "nightly-20261130010000",
                    Phase::PartiallyFailed,
                    "2026-11-30T01:00:00Z",
                ),
            ],
        ),
        view(
            "c2",
            vec![stored(
                "nightly-20261130010000",
                Phase::Completed,
                "2026-11-30T01:00:00Z",
            )],
        ),
    ];
    let plan = case.plan();
    let c1 = &plan.status.clusters[0];
    assert_eq!(
        c1.backups,
        vec!["nightly-20261130010000", "nightly-20261130004000"]
    );
    assert_eq!(
        c1.last_successful_backup.as_deref(),
        Some("nightly-20261130004000")
    );
    let last = c1.last_backup.as_ref().unwrap();
    assert_eq!(last.phase, Phase::PartiallyFailed);
    assert_eq!(last.errors, 1);
    assert_eq!(plan.status.phase, Some(FleetPhase::PartiallyFailed));
    let degraded = condition(&plan, DEGRADED);
    assert!(degraded.is_true());
    assert!(
        degraded
            .message
            .contains("c1 (nightly-20261130010000 PartiallyFailed)")
    );
    assert!(!degraded.message.contains("c2"));
}

#[test]
fn an_in_progress_record_nobody_runs_and_storage_lacks_was_interrupted() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:10:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    case.previous.clusters = vec![ClusterRuns {
        cluster: "c1".into(),
        last_backup: Some(RunStatus {
            name: "nightly-20261130010000".into(),
            phase: Phase::InProgress,
            start_timestamp: Some(ts("2026-11-30T01:00:01Z")),
            ..RunStatus::default()
        }),
        ..ClusterRuns::default()
    }];
    case.clusters = vec![view(
        "c1",
        vec![stored(
            "nightly-20261130004000",
            Phase::Completed,
            "2026-11-30T00:40:00Z",
        )],
    )];
    let plan = case.plan();
    let last = plan.status.clusters[0].last_backup.clone().unwrap();
    assert_eq!(last.name, "nightly-20261130010000");
    assert_eq!(last.phase, Phase::Failed);
    assert!(last.message.unwrap().starts_with("interrupted"));
    assert_eq!(last.completion_timestamp, Some(case.now));
    assert_eq!(
        plan.status.clusters[0].backups,
        vec!["nightly-20261130004000"],
        "nothing interrupted is listed as stored"
    );
    assert_eq!(plan.status.phase, Some(FleetPhase::Failed));
    assert!(condition(&plan, DEGRADED).is_true());
}

#[test]
fn a_live_run_shows_its_progress_and_is_not_called_interrupted() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:00:05Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    let mut status = BackupStatus {
        phase: Phase::InProgress,
        started: Some(ts("2026-11-30T01:00:01Z")),
        ..BackupStatus::default()
    };
    status.progress.items_done = 40;
    status.progress.total_items = 100;
    case.clusters[0].live = Some(LiveRun {
        name: "nightly-20261130010000".into(),
        firing: ts("2026-11-30T01:00:00Z"),
        status,
    });
    let plan = case.plan();
    let last = plan.status.clusters[0].last_backup.clone().unwrap();
    assert_eq!(
        (last.phase, last.items_backed_up, last.total_items),
        (Phase::InProgress, 40, 100)
    );
    assert_eq!(plan.status.phase, Some(FleetPhase::InProgress));
}

#[test]
fn a_run_deleted_from_storage_disappears_but_a_failure_that_stored_nothing_stays() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:10:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    let record = |name: &str, phase: Phase| ClusterRuns {
        cluster: "c1".into(),
        last_backup: Some(RunStatus {
            name: name.into(),
            phase,
            start_timestamp: Some(ts("2026-11-30T01:00:01Z")),
            completion_timestamp: Some(ts("2026-11-30T01:00:09Z")),
            message: Some("cluster unreachable".into()),
            ..RunStatus::default()
        }),
        backups: vec![name.into(), "nightly-20261130004000".into()],
        ..ClusterRuns::default()
    };
    case.clusters = vec![view(
        "c1",
        vec![stored(
            "nightly-20261130004000",
            Phase::Completed,
            "2026-11-30T00:40:00Z",
        )],
    )];

    case.previous.clusters = vec![record("nightly-20261130010000", Phase::Completed)];
    let plan = case.plan();
    let c1 = &plan.status.clusters[0];
    assert_eq!(c1.backups, vec!["nightly-20261130004000"]);
    assert_eq!(
        c1.last_backup.as_ref().unwrap().name,
        "nightly-20261130004000"
    );

    case.previous.clusters = vec![record("nightly-20261130010000", Phase::Failed)];
    let plan = case.plan();
    let last = plan.status.clusters[0].last_backup.clone().unwrap();
    assert_eq!(
        (last.name.as_str(), last.phase),
        ("nightly-20261130010000", Phase::Failed)
    );
    assert_eq!(last.message.as_deref(), Some("cluster unreachable"));
}

#[test]
fn a_newer_backup_written_by_backupctl_under_the_schedule_label_shows_up() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:10:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    case.previous.clusters = vec![ClusterRuns {
        cluster: "c1".into(),
        last_backup: Some(RunStatus {
            name: "nightly-20261130010000".into(),
            phase: Phase::Completed,
            ..RunStatus::default()
        }),
        ..ClusterRuns::default()
    }];
    case.clusters = vec![view(
        "c1",
        vec![
            stored(
                "nightly-20261130010000",
                Phase::Completed,
                "2026-11-30T01:00:00Z",
            ),
            stored(
                "manual-by-backupctl",
                Phase::Completed,
                "2026-11-30T01:05:00Z",
            ),
        ],
    )];
    let plan = case.plan();
    let c1 = &plan.status.clusters[0];
    assert_eq!(c1.last_backup.as_ref().unwrap().name, "manual-by-backupctl");
    assert_eq!(
        c1.last_successful_backup.as_deref(),
        Some("manual-by-backupctl")
    );
}

#[test]
fn a_listing_failure_keeps_what_was_known() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:10:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    case.previous.clusters = vec![ClusterRuns {
        cluster: "c1".into(),
        last_backup: Some(RunStatus {
            name: "nightly-20261130010000".into(),
            phase: Phase::Completed,
            ..RunStatus::default()
        }),
        last_successful_backup: Some("nightly-20261130010000".into()),
        backups: vec!["nightly-20261130010000".into()],
    }];
    case.clusters = vec![ClusterView {
        name: "c1".into(),
        stored: Err("storage unreachable".into()),
        live: None,
    }];
    let plan = case.plan();
    assert_eq!(plan.status.clusters, case.previous.clusters);
}

#[test]
fn fleet_phase_aggregates_the_last_runs() {
    let run = |phase| ClusterRuns {
        cluster: "c".into(),
        last_backup: Some(RunStatus {
            name: "b".into(),
            phase,
            ..RunStatus::default()
        }),
        ..ClusterRuns::default()
    };
    let none = ClusterRuns::default();
    use Phase::*;
    assert_eq!(
        fleet_phase(&[run(Completed), run(Completed)]),
        FleetPhase::Completed
    );
    assert_eq!(
        fleet_phase(&[run(Completed), none.clone()]),
        FleetPhase::PartiallyFailed
    );
    assert_eq!(
        fleet_phase(&[run(Completed), run(InProgress)]),
        FleetPhase::InProgress
    );
    assert_eq!(
        fleet_phase(&[run(Failed), run(FailedValidation)]),
        FleetPhase::Failed
    );
    assert_eq!(
        fleet_phase(&[run(Failed), run(Completed)]),
        FleetPhase::PartiallyFailed
    );
    assert_eq!(fleet_phase(&[none]), FleetPhase::New);
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T00:10:00Z",
    );
    let first = case.plan();
    case.previous = first.status.clone();
    case.now = ts("2026-11-30T00:15:00Z");
    let second = case.plan();
    assert_eq!(
        condition(&second, READY).last_transition_time,
        ts("2026-11-30T00:10:00Z")
    );
}

/// A run this process finished with `phase`, started at `started`.
fn ended(name: &str, phase: Phase, started: &str) -> LiveRun {
    LiveRun {
        name: name.into(),
        firing: ts(started),
        status: BackupStatus {
            phase,
            started: Some(ts(started)),
            completed: Some(ts(started)),
            errors: match phase {
                Phase::Failed => vec!["cluster unreachable".into()],
                _ => Vec::new(),
            },
            ..BackupStatus::default()
        },
    }
}

#[test]
fn a_finished_run_of_this_process_deleted_from_storage_disappears_from_status() {
    let mut case = Case::new(serde_json::json!({}), "2026-11-30T09:10:00Z");
    case.previous.last_schedule_time = Some(ts("2026-11-30T09:00:00Z"));
    case.clusters = vec![ClusterView {
        name: "c1".into(),
        stored: Ok(vec![]),
        live: Some(ended("nightly", Phase::Completed, "2026-11-30T09:00:00Z")),
    }];
    let plan = case.plan();
    let c1 = &plan.status.clusters[0];
    assert_eq!(c1.last_backup, None);
    assert_eq!(c1.last_successful_backup, None);
    assert!(c1.backups.is_empty());
}

#[test]
fn a_newer_stored_backup_is_last_even_beside_a_finished_run_of_this_process() {
    let mut case = Case::new(serde_json::json!({}), "2026-11-30T09:10:00Z");
    case.previous.last_schedule_time = Some(ts("2026-11-30T09:00:00Z"));
    case.clusters = vec![ClusterView {
        name: "c1".into(),
        stored: Ok(vec![
            stored("nightly", Phase::Completed, "2026-11-30T09:00:00Z"),
            stored("by-hand", Phase::Completed, "2026-11-30T09:05:00Z"),
        ]),
        live: Some(ended("nightly", Phase::Completed, "2026-11-30T09:00:00Z")),
    }];
    let c1 = case.plan().status.clusters[0].clone();
    assert_eq!(c1.last_backup.unwrap().name, "by-hand");
    assert_eq!(c1.last_successful_backup.as_deref(), Some("by-hand"));
    assert_eq!(c1.backups, vec!["by-hand", "nightly"]);
}

#[test]
fn a_finished_run_of_this_process_that_stored_nothing_stays_with_its_reason() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T01:10:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T01:00:00Z"));
    case.clusters = vec![ClusterView {
        name: "c1".into(),
        stored: Ok(vec![stored(
            "nightly-20261130004000",
            Phase::Completed,
            "2026-11-30T00:40:00Z",
        )]),
        live: Some(ended(
            "nightly-20261130010000",
            Phase::Failed,
            "2026-11-30T01:00:00Z",
        )),
    }];
    let plan = case.plan();
    let last = plan.status.clusters[0].last_backup.clone().unwrap();
    assert_eq!(
        (last.name.as_str(), last.phase),
        ("nightly-20261130010000", Phase::Failed)
    );
    assert_eq!(last.message.as_deref(), Some("cluster unreachable"));
    assert!(condition(&plan, DEGRADED).is_true());
}

fn running(name: &str, run: &str) -> ClusterView {
    ClusterView {
        live: Some(LiveRun {
            name: run.into(),
            firing: ts("2026-11-30T08:00:00Z"),
            status: BackupStatus {
                phase: Phase::InProgress,
                ..BackupStatus::default()
            },
        }),
        ..view(name, vec![])
    }
}

#[test]
fn a_run_now_token_runs_once_outside_the_schedule_without_moving_it() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "0 2 * * *"}),
        "2026-11-30T09:30:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T02:00:00Z"));
    case.run_now = Some("upgrade-1");
    let plan = case.plan();
    let fire = plan.fire.clone().expect("run-now fires at once");
    assert_eq!(fire.at, case.now);
    assert!(!fire.scheduled);
    assert_eq!(fire.run_now.as_deref(), Some("upgrade-1"));
    assert_eq!(fire.runs[0].1, "nightly-20261130093000");
    assert_eq!(plan.status.last_run_now_token.as_deref(), Some("upgrade-1"));
    // The schedule is where it was: same last slot, next slot tomorrow at 02:00.
    assert_eq!(
        plan.status.last_schedule_time,
        Some(ts("2026-11-30T02:00:00Z"))
    );
    assert_eq!(
        plan.status.next_schedule_time,
        Some(ts("2026-12-01T02:00:00Z"))
    );

    // Served: the same token (now in status) does nothing more.
    let mut again = Case::new(
        serde_json::json!({"schedule": "0 2 * * *"}),
        "2026-11-30T09:31:00Z",
    );
    again.previous = plan.status.clone();
    assert_eq!(again.plan().fire, None);
}

#[test]
fn a_second_run_now_within_the_same_second_waits_for_the_next_one() {
    let ran = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z").plan();
    let mut case = Case::new(serde_json::json!({}), "2026-11-30T09:30:00.250Z");
    case.previous = ran.status.clone();
    case.clusters = vec![view(
        "c1",
        vec![stored(
            "nightly-20261130093000",
            Phase::Completed,
            "2026-11-30T09:30:00Z",
        )],
    )];
    case.previous.last_run_now_token = Some("first".into());
    case.run_now = Some("second");
    let plan = case.plan();
    assert_eq!(plan.fire, None, "the name is taken this second");
    assert_eq!(plan.requeue_after, Some(Duration::from_millis(750)));
    case.now = ts("2026-11-30T09:30:01Z");
    let fire = case.plan().fire.expect("fires in the next second");
    assert_eq!(fire.runs[0].1, "nightly-20261130093001");
    assert_eq!(fire.run_now.as_deref(), Some("second"));
}

#[test]
fn run_now_works_for_a_paused_schedule_and_a_one_time_backup_that_ran() {
    let mut paused = Case::new(
        serde_json::json!({"schedule": "@daily", "paused": true}),
        "2026-11-30T09:00:00Z",
    );
    paused.run_now = Some("t");
    assert!(paused.plan().fire.is_some_and(|f| !f.scheduled));

    let ran = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z").plan();
    let mut once_more = Case::new(serde_json::json!({}), "2026-11-30T10:00:00Z");
    once_more.previous = ran.status.clone();
    once_more.run_now = Some("t");
    let plan = once_more.plan();
    let fire = plan.fire.expect("runs again on request");
    assert_eq!(
        fire.runs[0].1, "nightly-20261130100000",
        "a new name, never the first run's"
    );
    assert_eq!(
        plan.status.last_run_generation,
        ran.status.last_run_generation
    );
    assert_eq!(
        plan.status.last_schedule_time,
        ran.status.last_schedule_time
    );
}

#[test]
fn firings_never_overlap_the_due_one_waits_for_the_running_one() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 1m"}),
        "2026-11-30T09:00:30Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T08:59:00Z"));
    case.clusters = vec![running("c1", "nightly-20261130085900"), view("c2", vec![])];
    let plan = case.plan();
    assert_eq!(plan.fire, None, "due, but the previous firing still runs");
    assert!(
        condition(&plan, READY)
            .message
            .contains("starts when the previous"),
        "{}",
        condition(&plan, READY).message
    );
    case.run_now = Some("t");
    assert_eq!(case.plan().fire, None, "run-now waits too");

    // Once it ended, the due slot runs.
    case.clusters = vec![view("c1", vec![]), view("c2", vec![])];
    let fire = case.plan().fire.expect("fires after the running one ended");
    assert_eq!(fire.at, ts("2026-11-30T09:00:00Z"));
    assert!(fire.scheduled);
}

#[test]
fn a_read_only_location_blocks_runs_and_names_the_fix() {
    let mut case = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z");
    case.location = Ok(LocationFacts {
        name: "archive".into(),
        writable: false,
    });
    let plan = case.plan();
    assert_eq!(plan.fire, None);
    let ready = condition(&plan, READY);
    assert_eq!(
        (
            ready.is_true(),
            ready.reason.as_str(),
            ready.message.as_str()
        ),
        (
            false,
            "LocationReadOnly",
            "StorageLocation \"archive\" is ReadOnly: backups cannot be written to it; use a \
             ReadWrite location"
        )
    );
}

#[test]
fn named_clusters_are_missing_only_when_no_cluster_has_the_name() {
    let known = ["c1".to_string(), "c2".to_string()];
    let names = |n: &[&str]| Selection::Names(n.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        missing(&names(&["c1", "c9", "c2", "c8"]), &known),
        ["c9", "c8"]
    );
    assert!(missing(&names(&["c2"]), &known).is_empty());
    assert!(missing(&Selection::All, &[]).is_empty());
}

#[test]
fn a_firing_this_process_remembers_is_not_fired_again_before_its_status_is_back() {
    let mut case = Case::new(
        serde_json::json!({"schedule": "@every 20m"}),
        "2026-11-30T00:25:00Z",
    );
    case.previous.last_schedule_time = Some(ts("2026-11-30T00:00:00Z"));
    // Fired the 00:20 slot; the status saying so has not come back through the watch.
    case.fired_here = Some(ts("2026-11-30T00:20:00Z"));
    let plan = case.plan();
    assert_eq!(plan.fire, None);
    assert_eq!(
        plan.status.last_schedule_time,
        Some(ts("2026-11-30T00:20:00Z"))
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(15 * 60)));

    // After a restart the process remembers nothing, and the status has the last word.
    case.fired_here = None;
    case.previous.last_schedule_time = Some(ts("2026-11-30T00:20:00Z"));
    assert_eq!(case.plan().fire, None);
    // An older memory never moves the schedule back.
    case.fired_here = Some(ts("2026-11-30T00:00:00Z"));
    assert_eq!(
        case.plan().status.last_schedule_time,
        Some(ts("2026-11-30T00:20:00Z"))
    );
}

#[test]
fn a_run_now_token_is_served_once_whether_the_status_or_this_process_remembers_it() {
    let case_with = |token: &'static str| {
        let mut case = Case::new(
            serde_json::json!({"schedule": "0 2 * * *"}),
            "2026-11-30T09:30:00Z",
        );
        case.previous.last_schedule_time = Some(ts("2026-11-30T02:00:00Z"));
        case.run_now = Some(token);
        case
    };
    assert!(case_with("t1").plan().fire.is_some(), "a new token fires");
    assert_eq!(
        case_with("").plan().fire,
        None,
        "an empty token is no request"
    );
    let mut in_status = case_with("t1");
    in_status.previous.last_run_now_token = Some("t1".into());
    assert_eq!(in_status.plan().fire, None, "served, says the status");
    let mut served_here = case_with("t1");
    served_here.served_here = Some("t1");
    let plan = served_here.plan();
    assert_eq!(plan.fire, None, "served, says this process");
    assert_eq!(
        plan.status.last_run_now_token.as_deref(),
        Some("t1"),
        "the status this process writes says so too, even from a copy written before it served"
    );
    served_here.run_now = Some("t2");
    assert!(served_here.plan().fire.is_some(), "a different token fires");
}

#[test]
fn an_invalid_spec_says_which_field_and_schedules_nothing() {
    let ran = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z").plan();
    let mut previous = ran.status.clone();
    previous.next_schedule_time = Some(ts("2026-12-01T00:00:00Z"));
    let now = ts("2026-11-30T10:00:00Z");
    let status = invalid_spec(
        &previous,
        "spec.schedule: not a cron expression".into(),
        now,
        Some(2),
    );
    let mut expected = previous.clone();
    expected.observed_generation = Some(2);
    expected.next_schedule_time = None;
    expected.conditions = merge_conditions(
        &previous.conditions,
        vec![
            Condition::unmet(READY, "InvalidSpec", "spec.schedule: not a cron expression")
                .at(now, Some(2)),
        ],
    );
    assert_eq!(status, expected);
    let ready = find(&status.conditions, READY).expect("a Ready condition");
    assert_eq!(
        (ready.is_true(), ready.reason.as_str()),
        (false, "InvalidSpec")
    );
    assert_eq!(
        status.clusters, previous.clusters,
        "what storage showed stays"
    );
}

#[test]
fn a_firing_is_announced_with_its_cause_and_clusters() {
    let clusters = ["c1".to_string(), "c2".to_string()];
    let scheduled = Firing {
        at: ts("2026-11-30T02:00:00Z"),
        runs: Vec::new(),
        scheduled: true,
        run_now: Some("t".into()),
    };
    assert_eq!(
        scheduled.started_message(&clusters, 4),
        "backing up 2 cluster(s) for the run of 2026-11-30T02:00:00Z (4 at a time): c1, c2"
    );
    let asked = Firing {
        scheduled: false,
        ..scheduled
    };
    assert_eq!(
        asked.started_message(&clusters[..1], 1),
        "backing up 1 cluster(s) for run-now \"t\" (1 at a time): c1"
    );
}

#[test]
fn only_progress_of_runs_going_on_may_wait_to_be_written() {
    let mut case = Case::new(serde_json::json!({}), "2026-11-30T09:00:00Z");
    let started = case.plan();
    assert!(
        !started.changes_only_progress(&case.previous),
        "New to InProgress"
    );
    case.previous = started.status.clone();
    case.clusters = vec![running("c1", "nightly"), running("c2", "nightly")];
    let going = case.plan();
    assert!(going.changes_only_progress(&case.previous));
    case.clusters = vec![view("c1", vec![]), view("c2", vec![])];
    case.clusters[0].stored = Ok(vec![stored(
        "nightly",
        Phase::Completed,
        "2026-11-30T09:00:00Z",
    )]);
    case.clusters[1].stored = case.clusters[0].stored.clone();
    let done = case.plan();
    assert_eq!(done.status.phase, Some(FleetPhase::Completed));
    assert!(
        !done.changes_only_progress(&case.previous),
        "the end is written at once"
    );
}
