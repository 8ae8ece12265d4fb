//! What a running backup or restore accumulates besides the items: results, the resource list,
//! a log, and the live status the engine reports while it runs.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use backup_core::{BackupStatus, Phase};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::spill::{Fields, Sorter, put_key_str};
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

/// A resource list too large to hold: its lines go to an external sort, and the file is
/// streamed from it, byte for byte what [`ResourceList`] (sorted) serialises to.
#[derive(Default)]
pub struct ResourceListSpill {
    lines: Sorter,
    failed: Option<io::Error>,
}

impl ResourceListSpill {
    /// Records one object: `kind` is `<apiVersion>/<Kind>`, `object` `<namespace>/<name>` or,
    /// cluster-scoped, `<name>` (see [`ResourceList::add`]). Should the temporary file fail,
    /// the error is kept for [`ResourceListSpill::gzip_json`].
    pub fn add(&mut self, kind: &str, object: &str) {
        if self.failed.is_some() {
            return;
        }
        let mut line = Vec::with_capacity(kind.len() + object.len() + 4);
        put_key_str(&mut line, kind);
        put_key_str(&mut line, object);
        if let Err(e) = self.lines.push(&line) {
            self.failed = Some(e);
        }
    }

    /// The resource list as JSON, gzipped (as [`gzip_json`](crate::format::gzip_json) of the
    /// sorted [`ResourceList`] would write it), in an anonymous temporary file positioned at
    /// its start. Blocking.
    pub fn gzip_json(self) -> io::Result<File> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let file = io::BufWriter::new(tempfile::tempfile()?);
        let mut out = io::BufWriter::new(GzEncoder::new(file, Compression::default()));
        let mut current: Option<String> = None;
        out.write_all(b"{")?;
        for line in self.lines.finish()? {
            let line = line?;
            let mut f = Fields::new(&line);
            let kind = f.key_str()?;
            let object = f.key_str()?;
            if current.as_deref() == Some(kind.as_str()) {
                out.write_all(b",")?;
            } else {
                if current.is_some() {
                    out.write_all(b"],")?;
                }
                serde_json::to_writer(&mut out, &kind)?;
                out.write_all(b":[")?;
                current = Some(kind);
            }
            serde_json::to_writer(&mut out, &object)?;
        }
        if current.is_some() {
            out.write_all(b"]")?;
        }
        out.write_all(b"}")?;
        let gz = out.into_inner().map_err(|e| e.into_error())?.finish()?;
        let mut file = gz.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
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
    use crate::format::{gunzip_bytes, gzip_json};
    use std::io::Read;

    #[test]
    fn a_spilled_resource_list_is_the_file_a_resource_list_makes() {
        let objects = [
            ("apps/v1", "Deployment", Some("web"), "api"),
            ("v1", "Namespace", None, "web"),
            ("apps/v1", "Deployment", Some("web"), "a"),
            ("v1", "ConfigMap", Some("z\"q"), "x"),
            ("v1", "ConfigMap", Some("a"), "x"),
            ("apps/v1", "Deployment", Some("web"), "a"),
            ("v1", "Pod", Some("b"), "p"),
            ("v1", "PodTemplate", Some("b"), "p"),
        ];
        let mut list = ResourceList::default();
        let mut spill = ResourceListSpill::default();
        for (api_version, kind, ns, name) in objects {
            list.add(api_version, kind, ns, name);
            let object = ns.map_or(name.to_string(), |ns| format!("{ns}/{name}"));
            spill.add(&format!("{api_version}/{kind}"), &object);
        }
        list.sort();
        let read = |spill: ResourceListSpill| {
            let mut gz = Vec::new();
            spill.gzip_json().unwrap().read_to_end(&mut gz).unwrap();
            String::from_utf8(gunzip_bytes(&gz).unwrap()).unwrap()
        };
        let expected = gunzip_bytes(&gzip_json(&list).unwrap()).unwrap();
        assert_eq!(read(spill), String::from_utf8(expected).unwrap());
        assert_eq!(read(ResourceListSpill::default()), "{}");
    }

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
