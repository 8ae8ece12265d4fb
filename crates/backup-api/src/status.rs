//! Status conditions with Kubernetes' `metav1.Condition` semantics, shared by every kind.
//!
//! A condition's `lastTransitionTime` must only move when its status flips; otherwise a
//! controller that re-writes the same condition every reconcile makes it impossible for a user
//! to tell how long something has been failing.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::date_time;

/// `True`, `False` or `Unknown`, as Kubernetes spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not known yet.
    Unknown,
}

/// One status condition, serialised exactly like `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What the condition is about, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason, e.g. `BucketMissing`.
    pub reason: String,
    /// What happened and what to do about it, for people.
    pub message: String,
    /// When `status` last changed.
    #[schemars(schema_with = "date_time")]
    pub last_transition_time: Timestamp,
    /// The object generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The condition every kind has: whether its spec and what it refers to are usable (its
/// message says what to fix when not).
pub const READY: &str = "Ready";

impl Condition {
    /// A condition of `type_` that holds (`True`).
    pub fn met(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::with_status(type_, ConditionStatus::True, reason, message)
    }

    /// A condition of `type_` that does not hold (`False`).
    pub fn unmet(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::with_status(type_, ConditionStatus::False, reason, message)
    }

    /// A condition whose truth is not known yet (`Unknown`).
    pub fn unknown(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::with_status(type_, ConditionStatus::Unknown, reason, message)
    }

    fn with_status(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: Timestamp::UNIX_EPOCH,
            observed_generation: None,
        }
    }

    /// Stamps the time and generation a reconcile computed it at.
    pub fn at(mut self, now: Timestamp, generation: Option<i64>) -> Self {
        self.last_transition_time = now;
        self.observed_generation = generation;
        self
    }

    /// Whether the condition holds.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// The condition of `type_` in `conditions`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Replaces the conditions of `previous` by `current`, keeping each one's transition time
/// when its status did not change (see [`set_condition`]). Conditions absent from `current`
/// are dropped: the reconcile that computed `current` no longer asserts them.
pub fn merge_conditions(previous: &[Condition], current: Vec<Condition>) -> Vec<Condition> {
    let mut merged: Vec<Condition> = previous
        .iter()
        .filter(|p| current.iter().any(|c| c.type_ == p.type_))
        .cloned()
        .collect();
    for condition in current {
        set_condition(&mut merged, condition);
    }
    merged
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
    fn merging_keeps_transition_times_of_unchanged_statuses_and_drops_what_is_no_longer_said() {
        let previous = vec![
            ready(ConditionStatus::True, "Probed", 10),
            Condition::unmet("Degraded", "ClustersFailing", "c1")
                .at(Timestamp::from_second(20).unwrap(), Some(1)),
        ];
        let now = Timestamp::from_second(99).unwrap();
        let merged = merge_conditions(
            &previous,
            vec![Condition::met("Available", "Probed", "ok").at(now, Some(2))],
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].last_transition_time.as_second(), 10);
        assert_eq!(merged[0].message, "ok");
        assert_eq!(merged[0].observed_generation, Some(2));
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
