//! Status conditions with Kubernetes' `metav1.Condition` semantics.
//!
//! A condition's `lastTransitionTime` must only move when its status flips; otherwise a
//! controller that re-writes the same condition every reconcile makes it impossible for a user
//! to tell how long something has been failing.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `True`, `False` or `Unknown`, as Kubernetes spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One status condition, serialised exactly like `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason, e.g. `BucketMissing`.
    pub reason: String,
    /// What happened and what to do about it, for people.
    pub message: String,
    pub last_transition_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Inserts or updates `new` in `conditions` by type. Returns whether anything changed, so a
/// reconciler can skip a status write that would change nothing.
///
/// `new.last_transition_time` is used only when the status flips or the condition is new.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) => {
            let transition_time = if existing.status == new.status {
                existing.last_transition_time
            } else {
                new.last_transition_time
            };
            let updated = Condition {
                last_transition_time: transition_time,
                ..new
            };
            let changed = *existing != updated;
            *existing = updated;
            changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: ConditionStatus, reason: &str, at: i64) -> Condition {
        Condition {
            type_: "Available".into(),
            status,
            reason: reason.into(),
            message: format!("{reason} message"),
            last_transition_time: Timestamp::from_second(at).unwrap(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn a_new_condition_is_added() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Probed", 10)
        ));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn same_status_keeps_the_transition_time_but_takes_the_new_message() {
        let mut conditions = vec![ready(ConditionStatus::False, "BucketMissing", 10)];
        let changed = set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "AccessDenied", 50),
        );
        assert!(changed);
        assert_eq!(conditions[0].reason, "AccessDenied");
        assert_eq!(conditions[0].last_transition_time.as_second(), 10);
    }

    #[test]
    fn a_status_flip_moves_the_transition_time() {
        let mut conditions = vec![ready(ConditionStatus::False, "BucketMissing", 10)];
        set_condition(&mut conditions, ready(ConditionStatus::True, "Probed", 50));
        assert_eq!(conditions[0].status, ConditionStatus::True);
        assert_eq!(conditions[0].last_transition_time.as_second(), 50);
    }

    #[test]
    fn rewriting_an_identical_condition_reports_no_change() {
        let mut conditions = vec![ready(ConditionStatus::True, "Probed", 10)];
        assert!(!set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Probed", 99)
        ));
        assert_eq!(conditions[0].last_transition_time.as_second(), 10);
    }

    #[test]
    fn serialises_like_metav1_condition() {
        let json = serde_json::to_value(ready(ConditionStatus::True, "Probed", 0)).unwrap();
        assert_eq!(json["type"], "Available");
        assert_eq!(json["status"], "True");
        assert_eq!(json["lastTransitionTime"], "1970-01-01T00:00:00Z");
        assert_eq!(json["observedGeneration"], 1);
    }
}
