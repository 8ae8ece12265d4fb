//! The management-cluster controller.
//!
//! Reconcilers report what they see as status conditions, the way Kubernetes' own controllers
//! do; the condition rules live here so every reconciler follows them alike.

pub mod conditions;

pub use conditions::{Condition, ConditionStatus, set_condition};
