//! The results and resource-list files of backups and restores, and their gzip encoding.
//!
//! Velero's `Result` type (`pkg/util/results`) groups messages as `velero` (the tool itself),
//! `cluster` (cluster-scoped items) and `namespaces` (per namespace); the results file holds one
//! for errors and one for warnings. Empty parts are omitted, as Velero's `omitempty` does.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use backup_core::Phase;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Messages grouped the way Velero groups them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Results {
    /// About the run itself (e.g. a kind that could not be listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub velero: Vec<String>,
    /// About cluster-scoped items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
    /// About namespaced items, by namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, Vec<String>>,
}

impl Results {
    /// Adds a message for an item in `namespace` (or cluster-scoped when `None`).
    pub fn add(&mut self, namespace: Option<&str>, message: impl Into<String>) {
        match namespace {
            Some(ns) => self
                .namespaces
                .entry(ns.to_string())
                .or_default()
                .push(message.into()),
            None => self.cluster.push(message.into()),
        }
    }

    /// Adds a message about the run itself.
    pub fn add_velero(&mut self, message: impl Into<String>) {
        self.velero.push(message.into());
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.velero.len()
            + self.cluster.len()
            + self.namespaces.values().map(Vec::len).sum::<usize>()
    }

    /// Whether there are no messages.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every message, prefixed with where it belongs, for flat status lists.
    pub fn flatten(&self) -> Vec<String> {
        let mut out: Vec<String> = self.velero.clone();
        out.extend(self.cluster.iter().map(|m| format!("cluster: {m}")));
        for (ns, messages) in &self.namespaces {
            out.extend(messages.iter().map(|m| format!("namespace {ns}: {m}")));
        }
        out
    }
}

/// The content of `<name>-results.gz` and `restore-<name>-results.gz`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OperationResults {
    /// Item errors.
    #[serde(default)]
    pub errors: Results,
    /// Item warnings.
    #[serde(default)]
    pub warnings: Results,
}

impl OperationResults {
    /// The terminal phase of a run that got as far as writing these results: `Completed`
    /// without errors, else `PartiallyFailed` (Velero's rule for backups and restores alike).
    pub fn phase(&self) -> Phase {
        if self.errors.is_empty() {
            Phase::Completed
        } else {
            Phase::PartiallyFailed
        }
    }
}

/// The content of `<name>-resource-list.json.gz`: `"<apiVersion>/<Kind>"` (e.g. `apps/v1/Deployment`,
/// `v1/ConfigMap`) to `"<namespace>/<name>"` or, for cluster-scoped items, `"<name>"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceList(pub BTreeMap<String, Vec<String>>);

impl ResourceList {
    /// Records one item.
    pub fn add(&mut self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let entry = match namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        self.0
            .entry(format!("{api_version}/{kind}"))
            .or_default()
            .push(entry);
    }

    /// Total number of items listed.
    pub fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts every list, so the file is deterministic whatever order items were written in.
    pub fn sort(&mut self) {
        for v in self.0.values_mut() {
            v.sort();
        }
    }
}

/// Gzips bytes (Velero gzips its logs, results and resource lists).
pub fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

/// Serialises `value` as JSON and gzips it.
pub fn gzip_json<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    gzip_bytes(&json)
}

/// Gunzips bytes written by [`gzip_bytes`] (or by Velero), e.g. a log.
pub fn gunzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// Gunzips and parses JSON written by [`gzip_json`] (or by Velero).
pub fn gunzip_json<T: DeserializeOwned>(data: &[u8]) -> std::io::Result<T> {
    let json = gunzip_bytes(data)?;
    serde_json::from_slice(&json)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialise_like_velero_and_round_trip() {
        let mut r = OperationResults::default();
        r.warnings
            .add(Some("app"), "configmaps app/x already exists");
        r.warnings.add(None, "namespaces app already exists");
        r.warnings.add_velero("could not list secrets: forbidden");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["errors"], serde_json::json!({}));
        assert_eq!(
            v["warnings"]["namespaces"]["app"][0],
            "configmaps app/x already exists"
        );
        assert_eq!(v["warnings"]["cluster"][0], "namespaces app already exists");
        assert_eq!(r.warnings.len(), 3);
        assert!(r.errors.is_empty());
        let back: OperationResults = gunzip_json(&gzip_json(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.warnings.flatten().len(), 3);
    }

    #[test]
    fn phase_follows_errors_not_warnings() {
        let mut r = OperationResults::default();
        assert_eq!(r.phase(), Phase::Completed);
        r.warnings.add(None, "w");
        assert_eq!(r.phase(), Phase::Completed);
        r.errors.add_velero("e");
        assert_eq!(r.phase(), Phase::PartiallyFailed);
    }

    #[test]
    fn resource_list_keys_are_api_version_and_kind() {
        let mut list = ResourceList::default();
        list.add("apps/v1", "Deployment", Some("web"), "api");
        list.add("v1", "Namespace", None, "web");
        list.add("apps/v1", "Deployment", Some("web"), "a");
        list.sort();
        let v = serde_json::to_value(&list).unwrap();
        assert_eq!(
            v["apps/v1/Deployment"],
            serde_json::json!(["web/a", "web/api"])
        );
        assert_eq!(v["v1/Namespace"], serde_json::json!(["web"]));
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn gunzip_rejects_garbage() {
        assert!(gunzip_json::<ResourceList>(b"not gzip").is_err());
    }
}
