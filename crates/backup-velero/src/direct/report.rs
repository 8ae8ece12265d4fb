//! What a restore did (or, in a dry run, would do) to each item, for people and scripts.

use serde::Serialize;

/// What happened (or, in a dry run, would happen) to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Created (dry run: would be created).
    Created,
    /// Existing object patched to match the backup (policy `update`).
    Updated,
    /// Left alone: it exists (policy `none`) or is never restored.
    Skipped,
    /// Creating it failed; see the results.
    Failed,
}

/// One item's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemOutcome {
    /// `resource.group`.
    pub resource: String,
    /// Target namespace (after mapping).
    pub namespace: Option<String>,
    /// Name (after mapping, for namespaces).
    pub name: String,
    /// What happened.
    pub action: Action,
}

/// The detailed report of a restore, beyond the engine status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The backup restored from: the one named, or the one a schedule name resolved to.
    pub backup: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Every item considered, in restore order.
    pub items: Vec<ItemOutcome>,
    /// Errors and warnings, per namespace.
    pub results: crate::format::OperationResults,
}

impl RestoreReport {
    /// How many items ended with `action`.
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }
}
