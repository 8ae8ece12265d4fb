//! What one sweep of a location tells people: an Event on the StorageLocation naming what it
//! deleted, a Warning naming what it could not delete or list and why, and the counter
//! `backupfleet_expired_backups_deleted_total{namespace,location}`.
//!
//! Each sweep publishes through a recorder of its own. kube's recorder folds Events with the
//! same object and reason into one series that keeps its first note for six minutes, so with a
//! short `--gc-interval` a shared recorder would show the first sweep's backups for every later
//! one; a fresh recorder makes each sweep's Event name its own backups.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::context::Context;
use crate::metrics::ExpiryLabels;

/// Reason of the Event naming what a sweep deleted.
pub const DELETED: &str = "ExpiredBackupsDeleted";
/// Reason of the Warning naming what a sweep could not delete.
pub const NOT_DELETED: &str = "ExpiredBackupsNotDeleted";
/// Reason of the Warning naming the scopes a sweep could not list.
pub const NOT_LISTED: &str = "ExpiredBackupsNotListed";
/// The Events' action.
const ACTION: &str = "ExpiryCollection";

/// How many bytes of names or errors an Event's note holds before "and N more" (the API
/// server refuses notes over 1 kB; a few lines are what a person reads).
const NOTE_BUDGET: usize = 600;
/// The longest error kept per backup in a Warning.
const ERROR_BUDGET: usize = 200;

/// What one sweep of one location did, each backup as `<cluster>/<backup>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Deleted.
    pub deleted: Vec<String>,
    /// Due, but storage refused the deletion: with the error.
    pub refused: Vec<(String, String)>,
    /// Cluster scopes (or the project's folder) that could not be listed: with the error.
    pub unlisted: Vec<(String, String)>,
}

/// `items` joined with ", " while they fit `budget` bytes, then "and N more" for the rest
/// (always at least the first item).
pub fn capped_list(items: &[String], budget: usize) -> String {
    let mut out = String::new();
    for (shown, item) in items.iter().enumerate() {
        if shown > 0 && out.len() + 2 + item.len() > budget {
            out.push_str(&format!(" and {} more", items.len() - shown));
            return out;
        }
        if shown > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    out
}

/// At most `max` bytes of `text`, cut at a character boundary, with "..." when cut.
fn shortened(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub(3);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

/// The note of the Event naming what was deleted.
pub fn deleted_note(deleted: &[String]) -> String {
    format!(
        "deleted {} expired backup{}: {}",
        deleted.len(),
        if deleted.len() == 1 { "" } else { "s" },
        capped_list(deleted, NOTE_BUDGET)
    )
}

/// The note of a Warning naming backups or scopes with their errors, after `lead`.
pub fn problems_note(lead: &str, problems: &[(String, String)], hint: &str) -> String {
    let items: Vec<String> = problems
        .iter()
        .map(|(what, error)| format!("{what}: {}", shortened(error, ERROR_BUDGET)))
        .collect();
    format!("{lead} {}; {hint}", capped_list(&items, NOTE_BUDGET))
}

/// Publishes what `swept` says about `location` and counts the deletions.
pub async fn publish(
    ctx: &Context,
    reporter: &Reporter,
    location: &ObjectReference,
    labels: ExpiryLabels,
    swept: &Swept,
) {
    ctx.metrics
        .expired_backups_deleted(labels, swept.deleted.len() as u64);
    let recorder = Recorder::new(ctx.client.clone(), reporter.clone());
    let mut events = Vec::new();
    if !swept.deleted.is_empty() {
        events.push((false, DELETED, deleted_note(&swept.deleted)));
    }
    if !swept.refused.is_empty() {
        events.push((
            true,
            NOT_DELETED,
            problems_note(
                "could not delete expired",
                &swept.refused,
                "they stay until storage allows deleting them (a retention lock or bucket \
                 policy, or a ReadOnly location, refuses it)",
            ),
        ));
    }
    if !swept.unlisted.is_empty() {
        events.push((
            true,
            NOT_LISTED,
            problems_note(
                "could not list the backups of",
                &swept.unlisted,
                "their TTLs are applied once they can be listed (`backupctl backup list` \
                 shows the problem)",
            ),
        ));
    }
    for (warning, reason, note) in events {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(shortened(&note, 1000)),
            action: ACTION.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, location).await {
            tracing::debug!(error = %e, reason, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c1/backup-{i:03}")).collect()
    }

    #[test]
    fn a_short_list_is_shown_whole() {
        assert_eq!(
            deleted_note(&["c1/once".into(), "c1/adhoc".into()]),
            "deleted 2 expired backups: c1/once, c1/adhoc"
        );
        assert_eq!(
            deleted_note(&["c1/once".into()]),
            "deleted 1 expired backup: c1/once"
        );
    }

    #[test]
    fn a_long_list_ends_in_how_many_more_and_stays_under_the_budget() {
        let all = names(200);
        let note = capped_list(&all, 60);
        assert_eq!(
            note,
            "c1/backup-000, c1/backup-001, c1/backup-002, c1/backup-003 and 196 more"
        );
        let note = deleted_note(&all);
        assert!(note.len() < 700, "{}", note.len());
        assert!(note.ends_with(" more"), "{note}");
        let shown = note.matches("c1/backup-").count();
        assert!(
            note.contains(&format!("and {} more", 200 - shown)),
            "{note}"
        );
    }

    #[test]
    fn the_first_item_is_shown_even_when_it_alone_is_over_the_budget() {
        let long = vec!["x".repeat(50), "y".into()];
        assert_eq!(
            capped_list(&long, 10),
            format!("{} and 1 more", "x".repeat(50))
        );
        assert_eq!(capped_list(&[], 10), "");
    }

    #[test]
    fn a_warning_names_each_backup_with_its_error_cut_to_a_readable_length() {
        let refused = vec![
            ("c1/old".to_string(), "access denied".to_string()),
            ("c2/older".to_string(), "é".repeat(300)),
        ];
        let note = problems_note("could not delete expired", &refused, "fix it");
        assert!(
            note.starts_with("could not delete expired c1/old: access denied, c2/older: éé"),
            "{note}"
        );
        assert!(note.ends_with("...; fix it"), "{note}");
        assert!(note.len() < 300, "{}", note.len());
    }
}
