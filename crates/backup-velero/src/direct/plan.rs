//! Choosing what a restore creates, from a small summary of each item (never its body).
//!
//! While the tarball is spooled, each item is parsed once and reduced to an [`Entry`]: a
//! [`Head`] (kind, controller owners, skip reason, whether the filter selects it) and the
//! [`Record`] of its JSON in the spool. The filter is applied right there, so labels are never
//! kept: what stays per item is its path and a few words. [`plan`] then applies the skip
//! rules, the controller-owned rule and the filter's verdict, exactly as Velero's restore does.

use std::collections::{BTreeSet, HashSet};

use backup_core::{GroupResource, ItemRef, ResourceFilter};
use serde_json::Value;

use super::collect::Journal;
use super::sanitize::skip_reason;
use super::spool::Record;
use crate::format::ItemPath;

/// What planning needs to know about an item.
pub(super) struct Head {
    kind: String,
    /// Whether the restore's filter selects it (namespace, resource, labels); only meaningful
    /// for namespaced items, cluster-scoped ones are chosen in [`plan`].
    selected: bool,
    /// `(kind, name)` of controller owners.
    controllers: Vec<(String, String)>,
    skip: Option<&'static str>,
}

impl Head {
    fn of(path: &ItemPath, gr: &GroupResource, object: &Value, filter: &ResourceFilter) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let selected = path.namespace.as_ref().is_some_and(|ns| {
            filter.matches(&ItemRef {
                group_resource: gr.clone(),
                namespace: Some(ns.clone()),
                name: path.name.clone(),
                labels: object["metadata"]["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        });
        Head {
            kind: text(&object["kind"]),
            selected,
            controllers: object["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| o["controller"] == true)
                .map(|o| (text(&o["kind"]), text(&o["name"])))
                .collect(),
            skip: skip_reason(gr, object),
        }
    }
}

/// What is kept in memory of one item of the tarball.
pub(super) enum Entry {
    /// A JSON object, summarised.
    Item { head: Head, record: Record },
    /// Not valid JSON: why.
    Invalid(String),
}

impl Entry {
    /// Summarises one item's JSON (parsed here and dropped) and applies `filter` to it.
    pub(super) fn of(
        path: &ItemPath,
        data: &[u8],
        record: Record,
        filter: &ResourceFilter,
    ) -> Self {
        match serde_json::from_slice::<Value>(data) {
            Ok(object) => {
                let gr = GroupResource::new(&path.group, &path.resource);
                let head = Head::of(path, &gr, &object, filter);
                Entry::Item { head, record }
            }
            Err(e) => Entry::Invalid(e.to_string()),
        }
    }
}

/// One item chosen for restore; its JSON is still in the spool.
pub(super) struct Planned {
    pub(super) path: ItemPath,
    pub(super) record: Record,
}

impl Planned {
    /// Its group-resource (computed when needed rather than stored for every item).
    pub(super) fn gr(&self) -> GroupResource {
        GroupResource::new(&self.path.group, &self.path.resource)
    }
}

fn owner_key(kind: &str, ns: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", ns.unwrap_or(""))
}

/// Chooses what to restore: applies skip rules and the filter; logs what it leaves out.
///
/// Memory: `entries` is consumed as the plan is built, and the controller-owner rule only
/// remembers the owners items point at (usually few), not every item of the backup.
pub(super) fn plan(
    entries: Vec<(ItemPath, Entry)>,
    filter: &ResourceFilter,
    journal: &mut Journal,
) -> Vec<Planned> {
    // Owners that some item names as its controller, and which of them the backup holds.
    let mut referenced: HashSet<String> = entries
        .iter()
        .filter_map(|(path, entry)| match entry {
            Entry::Item { head, .. } => Some((path, head)),
            Entry::Invalid(_) => None,
        })
        .flat_map(|(path, head)| {
            head.controllers
                .iter()
                .map(|(kind, name)| owner_key(kind, path.namespace.as_deref(), name))
        })
        .collect();
    let owners: HashSet<String> = if referenced.is_empty() {
        HashSet::new()
    } else {
        entries
            .iter()
            .filter_map(|(path, entry)| match entry {
                Entry::Item { head, .. } => {
                    let key = owner_key(&head.kind, path.namespace.as_deref(), &path.name);
                    referenced.take(&key)
                }
                Entry::Invalid(_) => None,
            })
            .collect()
    };
    let mut planned = Vec::new();
    let mut used_namespaces = BTreeSet::new();
    let mut used_groups = BTreeSet::new();
    let mut cluster = Vec::new();
    for (path, entry) in entries {
        let (head, record) = match entry {
            Entry::Item { head, record } => (head, record),
            Entry::Invalid(e) => {
                journal.error(
                    path.namespace.as_deref(),
                    format!("{path}: not valid JSON: {e}"),
                );
                continue;
            }
        };
        if let Some(reason) = head.skip {
            journal.log("info", format!("{path} skipped: {reason}"));
            continue;
        }
        let owned = head
            .controllers
            .iter()
            .any(|(kind, name)| owners.contains(&owner_key(kind, path.namespace.as_deref(), name)));
        if owned {
            journal.log(
                "info",
                format!("{path} skipped: its controller owner is restored and recreates it"),
            );
            continue;
        }
        let Some(ns) = path.namespace.as_deref() else {
            cluster.push(Planned { path, record });
            continue;
        };
        if head.selected {
            if !used_namespaces.contains(ns) {
                used_namespaces.insert(ns.to_string());
            }
            let group = format!("{}.{}", path.resource, path.group);
            if !used_groups.contains(&group) {
                used_groups.insert(group);
            }
            planned.push(Planned { path, record });
        }
    }
    for p in cluster {
        let gr = p.gr();
        let keep = match gr.to_string().as_str() {
            "namespaces" => {
                filter.matches_namespace(&p.path.name)
                    && (used_namespaces.contains(&p.path.name)
                        || !filter.included_namespaces.is_empty())
            }
            "customresourcedefinitions.apiextensions.k8s.io" => {
                // Needed by restored custom objects, unless excluded by name.
                filter.matches_resource(&gr)
                    && (used_groups.contains(&p.path.name) || filter.matches_cluster_resource(&gr))
            }
            _ => filter.matches_cluster_resource(&gr),
        };
        if keep {
            planned.push(p);
        }
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(path: &str, object: Value, filter: &ResourceFilter) -> (ItemPath, Entry) {
        let path = ItemPath::parse(path).unwrap();
        let data = serde_json::to_vec(&object).unwrap();
        let entry = Entry::of(&path, &data, Record::for_test(0, data.len() as u64), filter);
        (path, entry)
    }

    fn owned_by(kind: &str, name: &str) -> Value {
        json!([{ "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "1", "controller": true }])
    }

    fn names(planned: &[Planned]) -> Vec<String> {
        planned.iter().map(|p| p.path.to_string()).collect()
    }

    #[test]
    fn items_whose_controller_is_in_the_backup_are_left_to_it() {
        let filter = ResourceFilter::default();
        let entries = vec![
            entry(
                "resources/deployments.apps/namespaces/app/web.json",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "app"}}),
                &filter,
            ),
            entry(
                "resources/replicasets.apps/namespaces/app/web-1.json",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "app", "ownerReferences": owned_by("Deployment", "web")}}),
                &filter,
            ),
            // Its controller is not in the backup: restored, or nothing would recreate it.
            entry(
                "resources/replicasets.apps/namespaces/app/orphan-1.json",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "orphan-1", "namespace": "app", "ownerReferences": owned_by("Deployment", "gone")}}),
                &filter,
            ),
            // Same owner name in another namespace does not count.
            entry(
                "resources/replicasets.apps/namespaces/other/web-2.json",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-2", "namespace": "other", "ownerReferences": owned_by("Deployment", "web")}}),
                &filter,
            ),
            (
                ItemPath::parse("resources/configmaps/namespaces/app/broken.json").unwrap(),
                Entry::Invalid("expected value".into()),
            ),
        ];
        let mut journal = Journal::default();
        let planned = plan(entries, &filter, &mut journal);
        assert_eq!(
            names(&planned),
            [
                "deployments.apps/app/web",
                "replicasets.apps/app/orphan-1",
                "replicasets.apps/other/web-2",
            ]
        );
        assert_eq!(journal.results.errors.flatten().len(), 1);
    }

    #[test]
    fn the_filter_is_decided_while_spooling_and_namespaces_follow_their_items() {
        let filter = ResourceFilter {
            label_selector: Some(backup_core::LabelSelector::parse("app=web").unwrap()),
            ..ResourceFilter::default()
        };
        let entries = vec![
            entry(
                "resources/namespaces/cluster/app.json",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
                &filter,
            ),
            entry(
                "resources/namespaces/cluster/empty.json",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "empty"}}),
                &filter,
            ),
            entry(
                "resources/configmaps/namespaces/app/web.json",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "app", "labels": {"app": "web"}}}),
                &filter,
            ),
            entry(
                "resources/configmaps/namespaces/app/db.json",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db", "namespace": "app", "labels": {"app": "db"}}}),
                &filter,
            ),
        ];
        let planned = plan(entries, &filter, &mut Journal::default());
        assert_eq!(names(&planned), ["configmaps/app/web", "namespaces/app"]);
    }
}
