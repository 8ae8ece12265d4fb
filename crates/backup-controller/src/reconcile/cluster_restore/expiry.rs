//! When a dry run the dashboard made to show a plan is deleted: an hour after it finished
//! ([`DASHBOARD_PLAN_LABEL`]). Nothing else expires here.

use std::time::Duration;

use backup_api::{ClusterRestore, DASHBOARD_PLAN_LABEL};
use jiff::Timestamp;

/// How long a finished dashboard plan is kept.
pub const PLAN_KEPT_FOR: Duration = Duration::from_secs(3600);

/// What becomes of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// It stays.
    Kept,
    /// Delete it now.
    Due,
    /// Look again after this long.
    DueIn(Duration),
}

/// What becomes of `restore` at `now`.
pub fn expiry(restore: &ClusterRestore, now: Timestamp) -> Expiry {
    let is_plan = restore.spec.options.dry_run
        && restore
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(DASHBOARD_PLAN_LABEL))
            == Some(&"true".to_string());
    let finished = restore.status.as_ref().and_then(|s| s.completion_timestamp);
    let (true, Some(finished)) = (is_plan, finished) else {
        return Expiry::Kept;
    };
    let age = now.duration_since(finished);
    if age.is_negative() {
        return Expiry::DueIn(PLAN_KEPT_FOR);
    }
    match PLAN_KEPT_FOR.checked_sub(age.unsigned_abs()) {
        Some(left) if !left.is_zero() => Expiry::DueIn(left),
        _ => Expiry::Due,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn restore(dry_run: bool, label: Option<&str>, finished: Option<&str>) -> ClusterRestore {
        serde_json::from_value(json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterRestore",
            "metadata": {"name": "plan-1", "namespace": "p",
                "labels": label.map(|v| json!({DASHBOARD_PLAN_LABEL: v}))},
            "spec": {"source": {"cluster": "c1", "backupName": "b"}, "dryRun": dry_run},
            "status": {"completionTimestamp": finished},
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_finished_dashboard_plan_goes_an_hour_after_it_finished() {
        let plan = restore(true, Some("true"), Some("2026-12-07T10:00:00Z"));
        assert_eq!(
            expiry(&plan, at("2026-12-07T10:15:00Z")),
            Expiry::DueIn(Duration::from_secs(45 * 60))
        );
        assert_eq!(expiry(&plan, at("2026-12-07T11:00:00Z")), Expiry::Due);
        assert_eq!(expiry(&plan, at("2026-12-08T10:00:00Z")), Expiry::Due);
        // A clock behind the record waits the whole hour rather than deleting early.
        assert_eq!(
            expiry(&plan, at("2026-12-07T09:00:00Z")),
            Expiry::DueIn(PLAN_KEPT_FOR)
        );
    }

    #[test]
    fn nothing_else_expires() {
        let now = at("2026-12-08T10:00:00Z");
        let finished = Some("2026-12-07T10:00:00Z");
        // A restore that restores, even labelled; a dry run someone else made; one running.
        assert_eq!(
            expiry(&restore(false, Some("true"), finished), now),
            Expiry::Kept
        );
        assert_eq!(expiry(&restore(true, None, finished), now), Expiry::Kept);
        assert_eq!(
            expiry(&restore(true, Some("yes"), finished), now),
            Expiry::Kept
        );
        assert_eq!(
            expiry(&restore(true, Some("true"), None), now),
            Expiry::Kept
        );
    }
}
