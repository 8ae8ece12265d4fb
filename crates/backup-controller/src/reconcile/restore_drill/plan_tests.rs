use super::*;
use backup_api::restore_drill::RestoreDrillSpec;
use backup_api::status::ConditionStatus;
use serde_json::json;

fn spec(schedule: Option<&str>) -> ValidRestoreDrill {
    let spec: RestoreDrillSpec = serde_json::from_value(json!({
        "clusterBackup": "nightly", "schedule": schedule,
        "target": {"sameCluster": {"namespacePrefix": "drill-"}}}))
    .unwrap();
    spec.validate().unwrap()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ended(cluster: &str, phase: DrillPhase) -> ClusterDrill {
    ClusterDrill {
        name: cluster.to_string(),
        last_drill: Some(DrillResult {
            backup_name: format!("nightly-{cluster}"),
            phase,
            ..DrillResult::default()
        }),
        last_proven_restorable: None,
    }
}

struct Case {
    spec: ValidRestoreDrill,
    previous: RestoreDrillStatus,
    now: Timestamp,
    run_now: Option<&'static str>,
    running_here: bool,
    blocked: Option<Blocked>,
}

impl Case {
    fn new(schedule: Option<&str>, now: &str) -> Self {
        Case {
            spec: spec(schedule),
            previous: RestoreDrillStatus::default(),
            now: at(now),
            run_now: None,
            running_here: false,
            blocked: None,
        }
    }

    fn plan(&self) -> Plan {
        let selected = names(&["c1", "c2", "c3"]);
        let completed: BTreeMap<String, String> = [("c1", "nightly-1"), ("c2", "nightly-2")]
            .iter()
            .map(|(c, b)| (c.to_string(), b.to_string()))
            .collect();
        plan(&PlanInput {
            name: "drill",
            generation: Some(1),
            now: self.now,
            created: at("2026-12-01T00:00:00Z"),
            spec: &self.spec,
            previous: &self.previous,
            blocked: self.blocked.clone(),
            selected: &selected,
            newest_completed: &completed,
            running_here: self.running_here,
            run_now: self.run_now,
        })
    }
}

fn started(plan: &Plan) -> Vec<(&str, &str)> {
    plan.start
        .iter()
        .map(|(c, d)| (c.as_str(), d.backup_name.as_str()))
        .collect()
}

fn condition<'p>(plan: &'p Plan, type_: &str) -> &'p Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("the condition is set")
}

#[test]
fn once_drills_each_cluster_that_has_a_backup_and_names_the_one_that_waits() {
    let plan = Case::new(None, "2026-12-07T10:00:00Z").plan();
    assert_eq!(started(&plan), [("c1", "nightly-1"), ("c2", "nightly-2")]);
    let (_, first) = &plan.start[0];
    assert_eq!(first.phase, DrillPhase::InProgress);
    assert_eq!(first.restore_name, "drill-20261207100000");
    assert_eq!(first.target_cluster, "c1", "the same cluster");
    assert_eq!(first.start_time, Some(at("2026-12-07T10:00:00Z")));
    let ready = condition(&plan, READY);
    assert_eq!(ready.status, ConditionStatus::True);
    assert!(
        ready
            .message
            .ends_with("waiting for a Completed run of ClusterBackup nightly on: c3"),
        "{}",
        ready.message
    );
    let proven = condition(&plan, PROVEN);
    assert_eq!(
        (proven.status, proven.reason.as_str()),
        (ConditionStatus::False, "NotYetProven")
    );
    assert_eq!(plan.requeue_after, None);
    let in_status: Vec<(&str, DrillPhase)> = plan
        .status
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.last_drill.as_ref().unwrap().phase))
        .collect();
    assert_eq!(
        in_status,
        [
            ("c1", DrillPhase::InProgress),
            ("c2", DrillPhase::InProgress)
        ]
    );
}

#[test]
fn once_does_not_drill_again_what_it_drilled_nor_anything_while_its_drills_run() {
    let mut case = Case::new(None, "2026-12-07T10:00:00Z");
    case.previous.clusters = vec![ended("c1", DrillPhase::Verified)];
    let plan = case.plan();
    assert_eq!(started(&plan), [("c2", "nightly-2")]);
    case.running_here = true;
    assert!(case.plan().start.is_empty(), "its task runs them");
}

#[test]
fn a_drill_left_in_progress_with_no_task_here_ends_failed_and_is_handed_back_for_cleanup() {
    let mut case = Case::new(Some("0 6 * * *"), "2026-12-07T10:00:00Z");
    case.previous.last_schedule_time = Some(at("2026-12-07T06:00:00Z"));
    case.previous.clusters = vec![
        ended("c1", DrillPhase::InProgress),
        ended("c2", DrillPhase::Verified),
    ];
    let plan = case.plan();
    assert_eq!(plan.interrupted.len(), 1);
    assert_eq!(plan.interrupted[0].backup_name, "nightly-c1");
    let c1 = plan.status.clusters[0].last_drill.as_ref().unwrap();
    assert_eq!(c1.phase, DrillPhase::Failed);
    assert_eq!(c1.completion_time, Some(at("2026-12-07T10:00:00Z")));
    assert!(c1.message.starts_with("interrupted"), "{}", c1.message);
    assert!(plan.start.is_empty(), "not due: the schedule fired already");
    assert_eq!(condition(&plan, PROVEN).reason, "DrillFailed");
    case.running_here = true;
    assert!(
        case.plan().interrupted.is_empty(),
        "running here is not cut short"
    );
}

#[test]
fn a_schedule_drills_everything_at_each_firing_and_missed_firings_are_one_drill() {
    let mut case = Case::new(Some("0 6 * * *"), "2026-12-07T05:59:00Z");
    case.previous.last_schedule_time = Some(at("2026-12-06T06:00:00Z"));
    case.previous.clusters = vec![
        ended("c1", DrillPhase::Verified),
        ended("c2", DrillPhase::Verified),
    ];
    let before = case.plan();
    assert!(before.start.is_empty());
    assert_eq!(
        before.status.next_schedule_time,
        Some(at("2026-12-07T06:00:00Z"))
    );
    assert_eq!(before.requeue_after, Some(Duration::from_secs(60)));
    // Three days missed (the controller was down): one drill, for the newest firing.
    case.now = at("2026-12-09T07:30:00Z");
    let after = case.plan();
    assert_eq!(after.start.len(), 2);
    assert_eq!(
        after.status.last_schedule_time,
        Some(at("2026-12-09T06:00:00Z"))
    );
    assert_eq!(
        after.status.next_schedule_time,
        Some(at("2026-12-10T06:00:00Z"))
    );
}

#[test]
fn run_now_drills_everything_once_per_token() {
    let mut case = Case::new(Some("0 6 * * *"), "2026-12-07T10:00:00Z");
    case.previous.last_schedule_time = Some(at("2026-12-07T06:00:00Z"));
    case.previous.clusters = vec![
        ended("c1", DrillPhase::Verified),
        ended("c2", DrillPhase::Verified),
    ];
    case.run_now = Some("t1");
    let asked = case.plan();
    assert_eq!(asked.start.len(), 2);
    assert_eq!(asked.status.last_run_now_token.as_deref(), Some("t1"));
    case.previous.last_run_now_token = Some("t1".into());
    assert!(case.plan().start.is_empty(), "served already");
    case.run_now = Some("");
    assert!(case.plan().start.is_empty(), "an empty token asks nothing");
}

#[test]
fn a_blocked_drill_starts_nothing_and_says_why() {
    let mut case = Case::new(None, "2026-12-07T10:00:00Z");
    case.blocked = Some(Blocked::new(
        "ClusterBackupNotFound",
        "ClusterBackup nightly does not exist in this namespace",
    ));
    let plan = case.plan();
    assert!(plan.start.is_empty());
    let ready = condition(&plan, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "ClusterBackupNotFound")
    );
}

#[test]
fn proven_needs_every_selected_cluster_verified_and_names_failures_first() {
    let selected = names(&["c1", "c2"]);
    let mut status = RestoreDrillStatus {
        clusters: vec![ended("c1", DrillPhase::Verified)],
        ..RestoreDrillStatus::default()
    };
    let not_yet = proven(&status, &selected);
    assert_eq!(not_yet.reason, "NotYetProven");
    assert!(not_yet.message.ends_with("c2"), "{}", not_yet.message);
    status.clusters.push(ended("c2", DrillPhase::Mismatched));
    let failed = proven(&status, &selected);
    assert_eq!(failed.reason, "DrillFailed");
    assert!(
        failed.message.contains("of c2 did not verify"),
        "{}",
        failed.message
    );
    status.clusters[1] = ended("c2", DrillPhase::Verified);
    assert_eq!(proven(&status, &selected).status, ConditionStatus::True);
}

#[test]
fn a_verified_drill_proves_its_backup_restorable_and_a_failed_one_keeps_the_last_proof() {
    let mut status = RestoreDrillStatus::default();
    let done = at("2026-12-07T10:05:00Z");
    let verified = DrillResult {
        backup_name: "nightly-1".into(),
        phase: DrillPhase::Verified,
        completion_time: Some(done),
        ..DrillResult::default()
    };
    record_end(&mut status, "c1", verified);
    let proof = status.clusters[0].last_proven_restorable.clone().unwrap();
    assert_eq!(
        (proof.backup_name.as_str(), proof.time),
        ("nightly-1", done)
    );
    let failed = DrillResult {
        backup_name: "nightly-2".into(),
        phase: DrillPhase::Failed,
        completion_time: Some(at("2026-12-08T10:05:00Z")),
        ..DrillResult::default()
    };
    record_end(&mut status, "c1", failed);
    assert_eq!(status.clusters[0].last_proven_restorable, Some(proof));
    assert_eq!(
        status.clusters[0].last_drill.as_ref().unwrap().phase,
        DrillPhase::Failed
    );
}

#[test]
fn cleanup_follows_the_policy() {
    use DrillCleanup::*;
    use DrillPhase::*;
    assert!(cleans_up(Always, Failed));
    assert!(cleans_up(OnSuccess, Verified));
    assert!(!cleans_up(OnSuccess, Mismatched));
    assert!(!cleans_up(Never, Verified));
}

#[test]
fn restore_names_fit_a_label_value() {
    let now = at("2026-12-07T10:00:00Z");
    assert_eq!(restore_name("nightly", now), "nightly-20261207100000");
    let long = "a".repeat(40) + "-" + &"b".repeat(30);
    let name = restore_name(&long, now);
    assert!(name.len() <= 63, "{name}");
    assert_eq!(
        name,
        format!("{}-{}-20261207100000", "a".repeat(40), "b".repeat(6))
    );
    let cut_at_dash = "a".repeat(46) + "-" + "b";
    assert_eq!(
        restore_name(&cut_at_dash, now),
        format!("{}-20261207100000", "a".repeat(46))
    );
}

#[test]
fn a_drill_looks_again_at_its_next_firing_and_soon_while_clusters_wait() {
    let recheck = Duration::from_secs(30);
    let mut case = Case::new(Some("0 6 * * *"), "2026-12-07T05:59:00Z");
    case.previous.last_schedule_time = Some(at("2026-12-06T06:00:00Z"));
    case.previous.clusters = vec![
        ended("c1", DrillPhase::Verified),
        ended("c2", DrillPhase::Verified),
    ];
    assert_eq!(case.plan().wait(recheck), Some(Duration::from_secs(60)));
    case.now = at("2026-12-07T06:00:00Z");
    assert_eq!(
        case.plan().wait(recheck),
        Some(recheck),
        "c3 waits for a backup"
    );
    let once = Case::new(None, "2026-12-07T10:00:00Z");
    assert_eq!(once.plan().wait(recheck), Some(recheck), "c3 waits");
    let mut done = Case::new(None, "2026-12-07T10:00:00Z");
    done.previous.clusters = ["c1", "c2", "c3"]
        .iter()
        .map(|c| ended(c, DrillPhase::Verified))
        .collect();
    assert_eq!(
        done.plan().wait(recheck),
        None,
        "a one-time drill that drilled all"
    );
}
