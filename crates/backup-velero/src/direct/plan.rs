//! Choosing what a restore creates, from a small summary of each item (never its body).
//!
//! While the tarball is spooled, each item is parsed once and reduced to an [`Entry`]: a
//! [`Head`] (kind, controller owners, skip reason, whether the filter selects it) and the
//! [`Record`] of its JSON in the spool. The filter is applied right there, so labels are never
//! kept: what stays per item is its path and a few words. [`plan`] then applies the skip
//! rules, the controller-owned rule and the filter's verdict, exactly as Velero's restore does.

use std::collections::BTreeSet;

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
    pub(super) gr: GroupResource,
    pub(super) record: Record,
}

fn owner_key(kind: &str, ns: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", ns.unwrap_or(""))
}

/// Chooses what to restore: applies skip rules and the filter; logs what it leaves out.
pub(super) fn plan(
    entries: Vec<(ItemPath, Entry)>,
    filter: &ResourceFilter,
    journal: &mut Journal,
) -> Vec<Planned> {
    let mut parsed = Vec::new();
    for (path, entry) in entries {
        match entry {
            Entry::Item { head, record } => {
                let gr = GroupResource::new(&path.group, &path.resource);
                parsed.push((path, gr, head, record));
            }
            Entry::Invalid(e) => journal.error(
                path.namespace.as_deref(),
                format!("{path}: not valid JSON: {e}"),
            ),
        }
    }
    let owners: BTreeSet<String> = parsed
        .iter()
        .map(|(p, _, head, _)| owner_key(&head.kind, p.namespace.as_deref(), &p.name))
        .collect();
    let mut planned = Vec::new();
    let mut used_namespaces = BTreeSet::new();
    let mut used_groups = BTreeSet::new();
    let mut cluster = Vec::new();
    for (path, gr, head, record) in parsed {
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
        let Some(ns) = path.namespace.clone() else {
            cluster.push(Planned { gr, path, record });
            continue;
        };
        if head.selected {
            used_namespaces.insert(ns);
            used_groups.insert(format!("{}.{}", path.resource, path.group));
            planned.push(Planned { gr, path, record });
        }
    }
    for p in cluster {
        let keep = match p.gr.to_string().as_str() {
            "namespaces" => {
                filter.matches_namespace(&p.path.name)
                    && (used_namespaces.contains(&p.path.name)
                        || !filter.included_namespaces.is_empty())
            }
            "customresourcedefinitions.apiextensions.k8s.io" => {
                // Needed by restored custom objects, unless excluded by name.
                filter.matches_resource(&p.gr)
                    && (used_groups.contains(&p.path.name)
                        || filter.matches_cluster_resource(&p.gr))
            }
            _ => filter.matches_cluster_resource(&p.gr),
        };
        if keep {
            planned.push(p);
        }
    }
    planned
}
