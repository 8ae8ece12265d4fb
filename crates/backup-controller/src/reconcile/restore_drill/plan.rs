//! The pure decisions of a RestoreDrill reconcile: whether drills are due (once, on the
//! schedule, or asked for with the run-now annotation), which clusters start now from which
//! backup, which wait and why, and when to look again.
//!
//! A one-time drill (no schedule) drills each selected cluster once; a cluster selected later
//! is drilled when it appears. A scheduled drill drills every selected cluster at each firing.
//! A cluster whose drill still runs is not started again; one without a Completed run of the
//! ClusterBackup waits, saying so.

use std::collections::{BTreeMap, BTreeSet};

use backup_api::restore_drill::{RestoreDrillStatus, ValidRestoreDrill};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// What the reconcile knows.
pub struct PlanInput<'a> {
    /// Now.
    pub now: Timestamp,
    /// When the object was created (a schedule's first firing comes after it).
    pub created: Timestamp,
    /// The validated spec.
    pub spec: &'a ValidRestoreDrill,
    /// The status as last written.
    pub previous: &'a RestoreDrillStatus,
    /// When the schedule last fired (as recorded).
    pub last_fired: Option<Timestamp>,
    /// The clusters the spec selects, by name.
    pub selected: &'a BTreeSet<String>,
    /// Each cluster's newest Completed run of the ClusterBackup.
    pub newest_completed: &'a BTreeMap<String, String>,
    /// Clusters whose drill runs in this process.
    pub running: &'a BTreeSet<String>,
    /// The run-now annotation, and the last one served.
    pub run_now: Option<&'a str>,
    /// The run-now token last served.
    pub served_run_now: Option<&'a str>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Clusters to drill now, each with the backup to drill.
    pub start: Vec<(String, String)>,
    /// Clusters that are due but cannot start, and why.
    pub waiting: Vec<(String, String)>,
    /// The firing these drills serve, to record.
    pub fired: Option<Timestamp>,
    /// The run-now token these drills serve, to record.
    pub serves_run_now: Option<String>,
    /// When to look again (the next firing).
    pub next: Option<Timestamp>,
}

/// Decides what a reconcile does.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut plan = Plan::default();
    let run_now = input
        .run_now
        .filter(|token| Some(*token) != input.served_run_now);
    let firing = due_firing(input);
    let due: Vec<&String> = match (run_now, firing, &input.spec.schedule) {
        // Asked for, or fired: every selected cluster.
        (Some(_), _, _) | (None, Some(_), _) => input.selected.iter().collect(),
        // Once: the clusters never drilled.
        (None, None, None) => input
            .selected
            .iter()
            .filter(|c| !drilled(input.previous, c))
            .collect(),
        (None, None, Some(_)) => Vec::new(),
    };
    for cluster in due {
        if input.running.contains(cluster) {
            continue;
        }
        match input.newest_completed.get(cluster) {
            Some(backup) => plan.start.push((cluster.clone(), backup.clone())),
            None => plan.waiting.push((
                cluster.clone(),
                format!(
                    "ClusterBackup {} has no Completed run of cluster {cluster} yet: the drill \
                     waits for one",
                    input.spec.cluster_backup
                ),
            )),
        }
    }
    plan.fired = firing;
    plan.serves_run_now = run_now.map(str::to_string);
    plan.next = input
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(input.now, &TimeZone::UTC));
    plan
}

/// The newest firing of the schedule at or before now that has not been served.
fn due_firing(input: &PlanInput<'_>) -> Option<Timestamp> {
    let schedule = input.spec.schedule.as_ref()?;
    let mut after = input.last_fired.unwrap_or(input.created);
    let mut due = None;
    // Missed firings are one drill, not many: the newest is served.
    for _ in 0..10_000 {
        match schedule.next_after(after, &TimeZone::UTC) {
            Some(at) if at <= input.now => {
                due = Some(at);
                after = at;
            }
            _ => break,
        }
    }
    due
}

/// Whether `cluster` has been drilled before.
fn drilled(previous: &RestoreDrillStatus, cluster: &str) -> bool {
    previous
        .clusters
        .iter()
        .any(|c| c.name == cluster && c.last_drill.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_api::restore_drill::{ClusterDrill, DrillResult, RestoreDrillSpec};
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

    fn newest(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(c, b)| (c.to_string(), b.to_string()))
            .collect()
    }

    fn drilled_status(clusters: &[&str]) -> RestoreDrillStatus {
        RestoreDrillStatus {
            clusters: clusters
                .iter()
                .map(|c| ClusterDrill {
                    name: c.to_string(),
                    last_drill: Some(DrillResult::default()),
                    last_verified_time: None,
                })
                .collect(),
            ..RestoreDrillStatus::default()
        }
    }

    struct Case {
        spec: ValidRestoreDrill,
        previous: RestoreDrillStatus,
        last_fired: Option<Timestamp>,
        now: Timestamp,
        run_now: Option<&'static str>,
        served: Option<&'static str>,
        running: BTreeSet<String>,
    }

    impl Case {
        fn new(schedule: Option<&str>, now: &str) -> Self {
            Case {
                spec: spec(schedule),
                previous: RestoreDrillStatus::default(),
                last_fired: None,
                now: at(now),
                run_now: None,
                served: None,
                running: BTreeSet::new(),
            }
        }

        fn plan(&self) -> Plan {
            let selected = names(&["c1", "c2", "c3"]);
            let completed = newest(&[("c1", "nightly-1"), ("c2", "nightly-2")]);
            plan(&PlanInput {
                now: self.now,
                created: at("2026-12-01T00:00:00Z"),
                spec: &self.spec,
                previous: &self.previous,
                last_fired: self.last_fired,
                selected: &selected,
                newest_completed: &completed,
                running: &self.running,
                run_now: self.run_now,
                served_run_now: self.served,
            })
        }
    }

    #[test]
    fn once_drills_each_cluster_that_has_a_backup_and_names_the_one_that_waits() {
        let plan = Case::new(None, "2026-12-07T10:00:00Z").plan();
        assert_eq!(
            plan.start,
            [
                ("c1".to_string(), "nightly-1".to_string()),
                ("c2".to_string(), "nightly-2".to_string())
            ]
        );
        assert_eq!(plan.waiting.len(), 1);
        assert_eq!(plan.waiting[0].0, "c3");
        assert!(plan.waiting[0].1.contains("no Completed run of cluster c3"));
        assert_eq!((plan.fired, plan.next), (None, None));
    }

    #[test]
    fn once_does_not_drill_again_what_it_drilled_nor_what_runs() {
        let mut case = Case::new(None, "2026-12-07T10:00:00Z");
        case.previous = drilled_status(&["c1"]);
        case.running = names(&["c2"]);
        let plan = case.plan();
        assert!(plan.start.is_empty(), "{plan:?}");
        assert_eq!(plan.waiting.len(), 1, "c3 still waits");
    }

    #[test]
    fn a_schedule_drills_everything_at_each_firing_and_missed_firings_are_one_drill() {
        let mut case = Case::new(Some("0 6 * * *"), "2026-12-07T05:59:00Z");
        case.last_fired = Some(at("2026-12-06T06:00:00Z"));
        case.previous = drilled_status(&["c1", "c2"]);
        let before = case.plan();
        assert!(before.start.is_empty() && before.waiting.is_empty());
        assert_eq!(before.next, Some(at("2026-12-07T06:00:00Z")));
        // Three days missed (the controller was down): one drill, for the newest firing.
        case.now = at("2026-12-09T07:30:00Z");
        let after = case.plan();
        assert_eq!(after.start.len(), 2);
        assert_eq!(after.fired, Some(at("2026-12-09T06:00:00Z")));
        assert_eq!(after.next, Some(at("2026-12-10T06:00:00Z")));
    }

    #[test]
    fn run_now_drills_everything_once_per_token() {
        let mut case = Case::new(Some("0 6 * * *"), "2026-12-07T10:00:00Z");
        case.last_fired = Some(at("2026-12-07T06:00:00Z"));
        case.previous = drilled_status(&["c1", "c2"]);
        case.run_now = Some("t1");
        let asked = case.plan();
        assert_eq!(asked.start.len(), 2);
        assert_eq!(asked.serves_run_now.as_deref(), Some("t1"));
        case.served = Some("t1");
        assert!(case.plan().start.is_empty(), "served already");
    }
}
