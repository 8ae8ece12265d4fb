use super::*;
use std::collections::BTreeSet;

use backup_core::Phase;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// "Now" in every case: the TTLs below run out around it.
const NOW: &str = "2026-12-01T12:00:00Z";

/// A backup started at `started` whose TTL runs out at `expires` (`None`: no TTL).
fn stored(name: &str, phase: Phase, started: &str, expires: Option<&str>) -> StoredBackup {
    StoredBackup {
        name: name.into(),
        phase,
        items_backed_up: 3,
        total_items: 3,
        started: Some(ts(started)),
        completed: Some(ts(started)),
        expiration: expires.map(ts),
        errors: 0,
        warnings: 0,
        labels: Default::default(),
    }
}

/// `backup` labelled as a run of `schedule`.
fn of(schedule: &str, mut backup: StoredBackup) -> StoredBackup {
    backup.labels.insert(SCHEDULE_LABEL.into(), schedule.into());
    backup
}

fn names(expired: &[Expired]) -> Vec<&str> {
    expired.iter().map(|e| e.name.as_str()).collect()
}

fn spared(plan: &ExpiryPlan) -> Vec<(&str, SpareReason)> {
    plan.spared
        .iter()
        .map(|s| (s.name.as_str(), s.reason.clone()))
        .collect()
}

const PAST: Option<&str> = Some("2026-12-01T11:00:00Z");
const FUTURE: Option<&str> = Some("2026-12-02T12:00:00Z");

#[test]
fn nothing_is_due_before_its_expiration_and_exactly_at_it_it_is() {
    let backups = [
        stored("later", Phase::Completed, "2026-11-01T00:00:00Z", FUTURE),
        stored("forever", Phase::Completed, "2026-01-01T00:00:00Z", None),
        stored("now", Phase::Completed, "2026-11-02T00:00:00Z", Some(NOW)),
        stored(
            "second-left",
            Phase::Completed,
            "2026-11-02T00:00:00Z",
            Some("2026-12-01T12:00:01Z"),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(
        plan.delete,
        [Expired {
            name: "now".into(),
            expired_at: ts(NOW),
            why: Why::NoSchedule,
        }]
    );
    assert!(plan.spared.is_empty(), "{plan:?}");
}

#[test]
fn an_expired_backup_of_no_schedule_goes_even_when_it_is_the_newest_and_successful() {
    // `backupctl backup create` without --schedule: nothing relies on it as a restore point.
    let backups = [stored(
        "adhoc",
        Phase::Completed,
        "2026-12-01T11:59:00Z",
        PAST,
    )];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["adhoc"]);
    assert_eq!(plan.delete[0].why, Why::NoSchedule);
}

#[test]
fn the_newest_successful_run_of_a_schedule_stays_however_long_ago_it_expired() {
    let backups = [
        of(
            "nightly",
            stored("nightly-1", Phase::Completed, "2026-11-01T02:00:00Z", PAST),
        ),
        of(
            "nightly",
            stored("nightly-2", Phase::Completed, "2026-11-02T02:00:00Z", PAST),
        ),
        of(
            "nightly",
            stored(
                "nightly-3",
                Phase::Completed,
                "2026-11-03T02:00:00Z",
                Some("2020-01-01T00:00:00Z"),
            ),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["nightly-1", "nightly-2"]);
    assert_eq!(
        plan.delete[0].why,
        Why::Superseded {
            schedule: "nightly".into(),
            newest: Some("nightly-3".into())
        }
    );
    assert_eq!(
        spared(&plan),
        [("nightly-3", SpareReason::NewestOfSchedule("nightly".into()))]
    );
}

#[test]
fn a_failed_run_newer_than_the_last_success_does_not_shield_it_nor_is_it_shielded() {
    let backups = [
        of(
            "nightly",
            stored("ok", Phase::Completed, "2026-11-01T02:00:00Z", PAST),
        ),
        of(
            "nightly",
            stored(
                "partial",
                Phase::PartiallyFailed,
                "2026-11-02T02:00:00Z",
                PAST,
            ),
        ),
        of(
            "nightly",
            stored("failed", Phase::Failed, "2026-11-03T02:00:00Z", PAST),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["partial", "failed"]);
    assert_eq!(
        spared(&plan),
        [("ok", SpareReason::NewestOfSchedule("nightly".into()))]
    );
}

#[test]
fn a_schedule_without_any_successful_run_loses_its_expired_runs() {
    let backups = [
        of(
            "broken",
            stored("broken-1", Phase::Failed, "2026-11-01T02:00:00Z", PAST),
        ),
        of(
            "broken",
            stored(
                "broken-2",
                Phase::PartiallyFailed,
                "2026-11-02T02:00:00Z",
                PAST,
            ),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["broken-1", "broken-2"]);
    assert_eq!(
        plan.delete[1].why,
        Why::Superseded {
            schedule: "broken".into(),
            newest: None
        }
    );
}

#[test]
fn an_unexpired_newest_run_lets_every_expired_older_one_go() {
    let backups = [
        of(
            "nightly",
            stored("old", Phase::Completed, "2026-11-01T02:00:00Z", PAST),
        ),
        of(
            "nightly",
            stored("new", Phase::Completed, "2026-12-01T02:00:00Z", FUTURE),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["old"]);
    assert!(plan.spared.is_empty());
}

#[test]
fn each_schedule_keeps_its_own_newest_run() {
    // `ci` is a schedule with no object: `backupctl backup create --schedule ci` from a job.
    let backups = [
        of(
            "daily",
            stored("daily-1", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
        of(
            "weekly",
            stored("weekly-1", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
        of(
            "weekly",
            stored("weekly-2", Phase::Completed, "2026-11-08T00:00:00Z", PAST),
        ),
        of(
            "ci",
            stored("ci-1", Phase::Completed, "2026-11-05T00:00:00Z", PAST),
        ),
        of(
            "ci",
            stored("ci-2", Phase::Completed, "2026-11-06T00:00:00Z", FUTURE),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["weekly-1", "ci-1"]);
    assert_eq!(
        spared(&plan),
        [
            ("daily-1", SpareReason::NewestOfSchedule("daily".into())),
            ("weekly-2", SpareReason::NewestOfSchedule("weekly".into())),
        ]
    );
}

#[test]
fn a_one_time_cluster_backup_is_no_schedule_so_all_its_expired_runs_go() {
    // Its first run is named exactly after it (a schedule's runs never are), and run-now
    // gives it more runs named with their start time.
    let backups = [
        of(
            "once",
            stored("once", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
        of(
            "once",
            stored(
                "once-20261102000000",
                Phase::Completed,
                "2026-11-02T00:00:00Z",
                PAST,
            ),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["once", "once-20261102000000"]);
    assert_eq!(plan.delete[1].why, Why::OneTime("once".into()));
    assert!(plan.spared.is_empty(), "{plan:?}");
}

#[test]
fn a_one_time_cluster_backup_whose_first_run_is_gone_is_known_by_its_object() {
    let backups = [of(
        "once",
        stored(
            "once-20261102000000",
            Phase::Completed,
            "2026-11-02T00:00:00Z",
            PAST,
        ),
    )];
    let unknown = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert!(
        unknown.delete.is_empty(),
        "without the object it looks like a schedule's run"
    );
    let one_time = BTreeSet::from(["once".to_string()]);
    let known = plan(&backups, &one_time, ts(NOW));
    assert_eq!(names(&known.delete), ["once-20261102000000"]);
    assert_eq!(known.delete[0].why, Why::OneTime("once".into()));
}

#[test]
fn a_series_is_also_told_apart_by_the_project_and_cluster_labels() {
    let on = |cluster: &str, backup: StoredBackup| {
        let mut backup = of("nightly", backup);
        backup.labels.insert(PROJECT_LABEL.into(), "team-a".into());
        backup.labels.insert(CLUSTER_LABEL.into(), cluster.into());
        backup
    };
    let backups = [
        on(
            "c1",
            stored("c1-run", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
        on(
            "c2",
            stored("c2-run", Phase::Completed, "2026-11-02T00:00:00Z", PAST),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert!(plan.delete.is_empty(), "{plan:?}");
    assert_eq!(plan.spared.len(), 2);
}

#[test]
fn equal_start_times_make_the_greater_name_the_newest() {
    let backups = [
        of(
            "nightly",
            stored("b", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
        of(
            "nightly",
            stored("a", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["a"]);
    assert_eq!(
        spared(&plan),
        [("b", SpareReason::NewestOfSchedule("nightly".into()))]
    );
}

#[test]
fn release_backups_stay_and_do_not_count_as_their_schedules_newest() {
    let release = |name: &str, started: &str| {
        let mut backup = of("mgmt", stored(name, Phase::Completed, started, PAST));
        backup
            .labels
            .insert(RELEASE_BACKUP_LABEL.into(), "1.0.0".into());
        backup
    };
    let backups = [
        of(
            "mgmt",
            stored("mgmt-1", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
        ),
        of(
            "mgmt",
            stored("mgmt-2", Phase::Completed, "2026-11-02T00:00:00Z", PAST),
        ),
        release("mgmt-1.0.0", "2026-11-03T00:00:00Z"),
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["mgmt-1"]);
    assert_eq!(
        spared(&plan),
        [
            ("mgmt-2", SpareReason::NewestOfSchedule("mgmt".into())),
            ("mgmt-1.0.0", SpareReason::ReleaseBackup),
        ]
    );
}

#[test]
fn a_backup_from_the_future_or_without_a_creation_time_stays() {
    let mut undated = stored("undated", Phase::Completed, "2026-11-01T00:00:00Z", PAST);
    undated.started = None;
    undated.completed = None;
    let backups = [
        stored("ahead", Phase::Completed, "2026-12-01T12:30:00Z", PAST),
        undated,
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert!(plan.delete.is_empty(), "{plan:?}");
    assert_eq!(
        spared(&plan),
        [
            ("undated", SpareReason::NoCreationTime),
            ("ahead", SpareReason::CreatedInTheFuture),
        ]
    );
}

#[test]
fn the_completion_time_orders_a_backup_that_records_no_start() {
    let mut old = of(
        "nightly",
        stored("old", Phase::Completed, "2026-11-01T00:00:00Z", PAST),
    );
    old.started = None;
    let backups = [
        of(
            "nightly",
            stored("new", Phase::Completed, "2026-11-02T00:00:00Z", PAST),
        ),
        old,
    ];
    let plan = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&plan.delete), ["old"]);
}

#[test]
fn the_result_is_oldest_first_whatever_the_listing_order_and_planning_again_deletes_nothing_more() {
    let backups = [
        stored("c", Phase::Completed, "2026-11-03T00:00:00Z", PAST),
        of(
            "nightly",
            stored("n2", Phase::Completed, "2026-11-05T00:00:00Z", PAST),
        ),
        stored("a", Phase::Failed, "2026-11-01T00:00:00Z", PAST),
        of(
            "nightly",
            stored("n1", Phase::Completed, "2026-11-04T00:00:00Z", PAST),
        ),
        stored("b", Phase::Completed, "2026-11-02T00:00:00Z", FUTURE),
    ];
    let first = plan(&backups, &BTreeSet::new(), ts(NOW));
    assert_eq!(names(&first.delete), ["a", "c", "n1"]);
    let left: Vec<StoredBackup> = backups
        .iter()
        .filter(|b| !first.delete.iter().any(|e| e.name == b.name))
        .cloned()
        .collect();
    let again = plan(&left, &BTreeSet::new(), ts(NOW));
    assert!(again.delete.is_empty(), "{again:?}");
    assert_eq!(again.spared, first.spared);
}

#[test]
fn the_reasons_read_as_sentences() {
    assert_eq!(
        Why::Superseded {
            schedule: "nightly".into(),
            newest: Some("nightly-3".into())
        }
        .to_string(),
        "a run of nightly, whose newest successful run nightly-3 stays"
    );
    assert_eq!(Why::NoSchedule.to_string(), "a backup of no schedule");
    assert_eq!(
        Why::OneTime("once".into()).to_string(),
        "a run of one-time ClusterBackup once"
    );
    assert_eq!(
        SpareReason::NewestOfSchedule("nightly".into()).to_string(),
        "the newest successful run of nightly"
    );
}
