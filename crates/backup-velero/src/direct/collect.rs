//! What a running backup or restore accumulates besides the items: results, the resource list,
//! a log, and the live status the engine reports while it runs.

use std::sync::{Arc, Mutex, MutexGuard};

use backup_core::{BackupStatus, Phase};

use crate::format::{OperationResults, ResourceList};

/// Most log lines kept; a run with more messages keeps the first ones and says so.
const MAX_LOG_LINES: usize = 20_000;

/// Live status, shared between the running task and `observe_*`, with a signal on every
/// phase change so a caller can wait for the end instead of polling for it.
#[derive(Debug, Clone)]
pub struct SharedStatus {
    status: Arc<Mutex<BackupStatus>>,
    phase: Arc<tokio::sync::watch::Sender<Phase>>,
}

impl Default for SharedStatus {
    fn default() -> Self {
        SharedStatus {
            status: Arc::default(),
            phase: Arc::new(tokio::sync::watch::Sender::new(Phase::default())),
        }
    }
}

impl SharedStatus {
    fn lock(&self) -> MutexGuard<'_, BackupStatus> {
        // A panicking writer leaves plain data behind; keep reporting it.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signals the phase of `status` if it changed.
    fn publish(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            let changed = *current != phase;
            *current = phase;
            changed
        });
    }

    /// A copy of the current status.
    pub fn get(&self) -> BackupStatus {
        self.lock().clone()
    }

    /// Applies `f` to the status.
    pub fn update(&self, f: impl FnOnce(&mut BackupStatus)) {
        let phase = {
            let mut status = self.lock();
            f(&mut status);
            status.phase
        };
        self.publish(phase);
    }

    /// Adds to the number of items known to be in scope.
    pub fn add_total(&self, n: u64) {
        self.lock().progress.total_items += n;
    }

    /// Adds to the number of items done.
    pub fn add_done(&self, n: u64) {
        self.lock().progress.items_done += n;
    }

    /// Sets the phase.
    pub fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
        self.publish(phase);
    }

    /// Changes of the phase, from now on.
    pub fn phase_changes(&self) -> tokio::sync::watch::Receiver<Phase> {
        self.phase.subscribe()
    }
}

/// Results, resource list and log of one run.
#[derive(Debug, Default)]
pub struct Journal {
    /// Errors and warnings, Velero-grouped.
    pub results: OperationResults,
    /// What was backed up or restored.
    pub resource_list: ResourceList,
    log: Vec<String>,
    dropped: usize,
}

impl Journal {
    /// Appends a log line (`time level message`, like Velero's logrus text output).
    pub fn log(&mut self, level: &str, message: impl AsRef<str>) {
        if self.log.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        self.log.push(format!(
            "time=\"{}\" level={level} msg={:?}",
            jiff::Timestamp::now(),
            message.as_ref()
        ));
    }

    /// Records a warning (also logged).
    pub fn warn(&mut self, namespace: Option<&str>, message: String) {
        self.log("warning", &message);
        self.results.warnings.add(namespace, message);
    }

    /// Records an error (also logged).
    pub fn error(&mut self, namespace: Option<&str>, message: String) {
        self.log("error", &message);
        self.results.errors.add(namespace, message);
    }

    /// The log as text.
    pub fn log_text(&self) -> String {
        let mut text = self.log.join("\n");
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n{} further log lines were dropped",
                self.dropped
            ));
        }
        text.push('\n');
        text
    }
}

/// A journal shared by concurrent workers.
pub type SharedJournal = Arc<Mutex<Journal>>;

/// Locks a shared journal, tolerating poisoning (the data is append-only).
pub fn lock(journal: &SharedJournal) -> MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_groups_and_logs() {
        let mut j = Journal::default();
        j.warn(Some("app"), "x exists".into());
        j.error(None, "y failed".into());
        assert_eq!(j.results.warnings.namespaces["app"], vec!["x exists"]);
        assert_eq!(j.results.errors.cluster, vec!["y failed"]);
        let text = j.log_text();
        assert!(
            text.contains("level=warning") && text.contains("y failed"),
            "{text}"
        );
        let s = SharedStatus::default();
        s.add_total(3);
        s.add_done(2);
        assert_eq!(s.get().progress.items_done, 2);
        assert_eq!(s.get().progress.total_items, 3);
    }
}
