//! The status versions this process wrote, so a reconcile never decides from a cached object
//! older than its own last write.
//!
//! The informer's copy of an object catches up with a status write a moment after the write
//! returns. A reconcile that runs in between (a requeue, another object's event) would plan from
//! the status before the write and then write that older view back by server-side apply,
//! dropping what the write had added: a ClusterBackup lost its `lastRunNowToken` this way, and a
//! one-time run could have started twice. So each write remembers the `resourceVersion` the API
//! server answered, and a reconcile of an older copy waits for the watch to deliver the newer
//! one (whose event reconciles it again anyway).

use std::collections::HashMap;
use std::sync::Mutex;

/// The `resourceVersion` of the last status write per object uid.
#[derive(Default)]
pub struct WrittenVersions {
    by_uid: Mutex<HashMap<String, u64>>,
}

impl WrittenVersions {
    /// Remembers that the status write on `uid` was answered with `version`.
    pub fn record(&self, uid: &str, version: Option<&str>) {
        let Some(version) = version.and_then(parse) else {
            return;
        };
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        let known = by_uid.entry(uid.to_string()).or_insert(version);
        *known = (*known).max(version);
    }

    /// Forgets `uid` (its object is being deleted), so the memory holds only live objects.
    pub fn forget(&self, uid: &str) {
        self.by_uid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// Whether the cached copy of `uid` at `version` is older than this process's last write
    /// to it. A copy that has caught up clears the memory. A version that is not a number
    /// (Kubernetes calls them opaque; etcd-backed API servers send numbers) cannot be ordered,
    /// so it is taken as current, which is how every reconcile behaved before this check.
    pub fn behind(&self, uid: &str, version: Option<&str>) -> bool {
        let Some(cached) = version.and_then(parse) else {
            return false;
        };
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        match by_uid.get(uid) {
            Some(written) if cached < *written => true,
            Some(_) => {
                by_uid.remove(uid);
                false
            }
            None => false,
        }
    }
}

fn parse(version: &str) -> Option<u64> {
    version.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_older_than_the_last_write_is_behind_until_the_write_arrives() {
        let written = WrittenVersions::default();
        written.record("u", Some("120"));
        assert!(written.behind("u", Some("119")));
        assert!(!written.behind("u", Some("120")));
        // Caught up once: the memory is gone, an older copy is no longer judged.
        assert!(!written.behind("u", Some("119")));
    }

    #[test]
    fn a_deleted_object_is_forgotten() {
        let written = WrittenVersions::default();
        written.record("u", Some("120"));
        written.forget("u");
        assert!(!written.behind("u", Some("7")));
    }

    #[test]
    fn a_later_write_by_someone_else_counts_as_caught_up() {
        let written = WrittenVersions::default();
        written.record("u", Some("120"));
        assert!(!written.behind("u", Some("135")));
    }

    #[test]
    fn objects_are_apart_and_unknown_ones_are_current() {
        let written = WrittenVersions::default();
        written.record("u", Some("120"));
        assert!(!written.behind("other", Some("1")));
        assert!(written.behind("u", Some("7")));
    }

    #[test]
    fn the_newest_write_wins_and_versions_that_are_not_numbers_are_not_ordered() {
        let written = WrittenVersions::default();
        written.record("u", Some("130"));
        written.record("u", Some("120"));
        assert!(written.behind("u", Some("125")));
        written.record("v", Some("opaque"));
        assert!(!written.behind("v", Some("1")));
        written.record("w", Some("10"));
        assert!(!written.behind("w", Some("opaque")));
        assert!(!written.behind("w", None));
    }
}
