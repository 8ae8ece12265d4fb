//! Choosing what a restore creates, from a small summary of each item (never its body), kept
//! on disk so that memory does not grow with the backup.
//!
//! While the tarball is spooled, each item is parsed once and reduced to an [`Entry`]: a
//! [`Head`] (kind, controller owners, skip reason, whether the filter selects it) and the
//! [`Record`] of its JSON in the spool. The filter is applied right there, so labels are never
//! kept. [`ItemsBuilder`] writes each summary to a temporary file and [`ItemsBuilder::finish`]
//! keeps one copy per item (the tarball reader remembers only recent paths, see
//! [`for_each_entry`](crate::format::tarball::for_each_entry)) in tarball order: [`Items`].
//!
//! [`plan`] then applies the skip rules, the controller-owned rule and the filter's verdict,
//! exactly as Velero's restore does, in passes over [`Items`]; what it chooses comes out of an
//! external sort in restore order ([`Plan`]). Nothing per item stays in memory: the
//! controller-owned rule is a join of two sorted streams (the owners items name, the items the
//! backup holds), and what is kept is per namespace and per group-resource (used namespaces,
//! used groups, the restore order).

use std::collections::{BTreeSet, HashMap};
use std::io;

use backup_core::velero_data::restore_order;
use backup_core::{GroupResource, ItemRef, ResourceFilter};
use serde_json::Value;

use super::collect::Journal;
use super::sanitize::skip_reason;
use super::spill::{
    Fields, RecordFile, RecordWriter, Sorted, Sorter, put_opt_str, put_str, put_u8, put_u32,
    put_u64,
};
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
    skip: Option<String>,
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
            skip: skip_reason(gr, object).map(str::to_string),
        }
    }
}

/// What is known of one item of the tarball.
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

    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Invalid(e) => {
                put_u8(out, 0);
                put_str(out, e);
            }
            Entry::Item { head, record } => {
                put_u8(out, 1);
                put_record(out, *record);
                put_u8(out, u8::from(head.selected));
                put_str(out, &head.kind);
                put_opt_str(out, head.skip.as_deref());
                put_u32(out, head.controllers.len() as u32);
                for (kind, name) in &head.controllers {
                    put_str(out, kind);
                    put_str(out, name);
                }
            }
        }
    }

    fn get(f: &mut Fields<'_>) -> io::Result<Self> {
        if f.u8()? == 0 {
            return Ok(Entry::Invalid(f.str()?.to_string()));
        }
        let record = get_record(f)?;
        let selected = f.u8()? != 0;
        let kind = f.str()?.to_string();
        let skip = f.opt_str()?.map(str::to_string);
        let controllers = (0..f.u32()?)
            .map(|_| Ok((f.str()?.to_string(), f.str()?.to_string())))
            .collect::<io::Result<_>>()?;
        Ok(Entry::Item {
            head: Head {
                kind,
                selected,
                controllers,
                skip,
            },
            record,
        })
    }
}

fn put_record(out: &mut Vec<u8>, record: Record) {
    let (offset, len) = record.parts();
    put_u64(out, offset);
    put_u64(out, len);
}

fn get_record(f: &mut Fields<'_>) -> io::Result<Record> {
    Ok(Record::from_parts(f.u64()?, f.u64()?))
}

/// A normalised path (`version_dir` is always `None` here).
fn put_path(out: &mut Vec<u8>, path: &ItemPath) {
    put_str(out, &path.resource);
    put_str(out, &path.group);
    put_opt_str(out, path.namespace.as_deref());
    put_str(out, &path.name);
}

fn get_path(f: &mut Fields<'_>) -> io::Result<ItemPath> {
    Ok(ItemPath {
        resource: f.str()?.to_string(),
        group: f.str()?.to_string(),
        namespace: f.opt_str()?.map(str::to_string),
        name: f.str()?.to_string(),
        version_dir: None,
    })
}

/// How long the encoded path at the start of `record` is.
fn path_len(record: &[u8]) -> io::Result<usize> {
    let mut f = Fields::new(record);
    f.str()?;
    f.str()?;
    f.opt_str()?;
    f.str()?;
    Ok(record.len() - f.rest().len())
}

/// Collects the summaries of a tarball's items while it is spooled.
pub(super) struct ItemsBuilder {
    /// Every copy passed: path, 0 for a plain copy (1 otherwise), position, entry.
    copies: Sorter,
    filter: ResourceFilter,
    resources: BTreeSet<GroupResource>,
    /// `(group, resource)` of the last item added.
    last: (String, String),
    buf: Vec<u8>,
}

impl ItemsBuilder {
    /// Summaries for a restore with `filter`.
    pub(super) fn new(filter: ResourceFilter) -> Self {
        ItemsBuilder {
            copies: Sorter::default(),
            filter,
            resources: BTreeSet::new(),
            last: (String::new(), String::new()),
            buf: Vec::new(),
        }
    }

    /// Summarises one copy of an item (see [`spool_tarball`](super::spool::spool_tarball)).
    pub(super) fn add(
        &mut self,
        pos: u64,
        path: &ItemPath,
        plain: bool,
        data: &[u8],
        record: Record,
    ) -> io::Result<()> {
        let entry = Entry::of(path, data, record, &self.filter);
        self.buf.clear();
        put_path(&mut self.buf, path);
        put_u8(&mut self.buf, u8::from(!plain));
        put_u64(&mut self.buf, pos);
        entry.put(&mut self.buf);
        self.copies.push(&self.buf)?;
        // Items come resource by resource: look the group-resource up only when it changes.
        let (group, resource) = &self.last;
        if *group != path.group || *resource != path.resource || self.resources.is_empty() {
            self.resources
                .insert(GroupResource::new(&path.group, &path.resource));
            self.last = (path.group.clone(), path.resource.clone());
        }
        Ok(())
    }

    /// Keeps one copy of each item, as [`for_each_item`](crate::format::tarball::for_each_item)
    /// would have: the first plain copy, else the first copy, at the position of its first
    /// copy. Sorting by path puts an item's copies together, the plain ones first, each kind
    /// in tarball order; sorting the survivors by position restores the tarball's order.
    pub(super) fn finish(self) -> io::Result<Items> {
        let mut by_position = Sorter::default();
        // The first copy of the current path (the one kept), its path's length, and the
        // position of the path's first copy.
        let mut current: Option<(Vec<u8>, usize, u64)> = None;
        let mut keep = |kept: Option<(Vec<u8>, usize, u64)>| -> io::Result<()> {
            if let Some((copy, path_len, first)) = kept {
                let mut out = Vec::with_capacity(copy.len());
                put_u64(&mut out, first);
                out.extend_from_slice(&copy[..path_len]);
                out.extend_from_slice(&copy[path_len + 9..]);
                by_position.push(&out)?;
            }
            Ok(())
        };
        for copy in self.copies.finish()? {
            let copy = copy?;
            let len = path_len(&copy)?;
            let mut f = Fields::new(&copy[len..]);
            f.u8()?;
            let pos = f.u64()?;
            match &mut current {
                Some((kept, kept_len, first)) if kept[..*kept_len] == copy[..len] => {
                    *first = (*first).min(pos);
                }
                _ => keep(current.replace((copy, len, pos)))?,
            }
        }
        keep(current)?;
        let mut file = RecordWriter::new()?;
        let mut with_controllers = 0;
        for item in by_position.finish()? {
            let item = item?;
            let summary = &item[8..];
            let mut f = Fields::new(summary);
            get_path(&mut f)?;
            if let Entry::Item { head, .. } = Entry::get(&mut f)?
                && !head.controllers.is_empty()
            {
                with_controllers += 1;
            }
            file.push(summary)?;
        }
        Ok(Items {
            file: file.finish()?,
            resources: self.resources,
            with_controllers,
        })
    }
}

/// The summaries of a backup's items, one per item, in tarball order, in a temporary file.
pub(super) struct Items {
    file: RecordFile,
    /// Every group-resource the backup holds.
    resources: BTreeSet<GroupResource>,
    /// How many items name a controller owner.
    with_controllers: u64,
}

impl Items {
    /// How many items the backup holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.iter().count()
    }

    /// Every item, in tarball order (each call reads the file again).
    fn iter(&self) -> impl Iterator<Item = io::Result<(ItemPath, Entry)>> + use<> {
        self.file.iter().map(|item| {
            let item = item?;
            let mut f = Fields::new(&item);
            Ok((get_path(&mut f)?, Entry::get(&mut f)?))
        })
    }

    /// A table of exactly `entries`, in this order.
    #[cfg(test)]
    fn of(entries: Vec<(ItemPath, Entry)>) -> Self {
        let mut builder = ItemsBuilder::new(ResourceFilter::default());
        for (pos, (path, entry)) in entries.into_iter().enumerate() {
            let mut buf = Vec::new();
            put_path(&mut buf, &path);
            put_u8(&mut buf, 0);
            put_u64(&mut buf, pos as u64);
            entry.put(&mut buf);
            builder.copies.push(&buf).unwrap();
            builder
                .resources
                .insert(GroupResource::new(&path.group, &path.resource));
        }
        builder.finish().unwrap()
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

/// What a restore creates, in restore order.
pub(super) struct Plan {
    /// The group-resources of the backup in Velero's restore order (an item's group is
    /// `order[rank]`).
    pub(super) order: Vec<GroupResource>,
    /// How many items are chosen.
    pub(super) total: u64,
    /// The namespaces (as in the backup) chosen namespaced items are in.
    pub(super) namespaces: BTreeSet<String>,
    /// The chosen items with their group's rank: group by group in [`Plan::order`], each group
    /// in tarball order (namespaced items before cluster-scoped ones).
    pub(super) items: PlannedItems,
}

/// The items of a [`Plan`], read from its sort.
pub(super) struct PlannedItems(Sorted);

impl Iterator for PlannedItems {
    type Item = io::Result<(usize, Planned)>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.0.next()?;
        Some(item.and_then(|item| {
            let mut f = Fields::new(&item);
            let rank = f.u32()? as usize;
            f.u8()?;
            f.u64()?;
            let path = get_path(&mut f)?;
            let record = get_record(&mut f)?;
            Ok((rank, Planned { path, record }))
        }))
    }
}

fn push_planned(
    sorter: &mut Sorter,
    rank: u32,
    cluster_scoped: bool,
    seq: u64,
    path: &ItemPath,
    record: Record,
) -> io::Result<()> {
    let mut buf = Vec::new();
    put_u32(&mut buf, rank);
    put_u8(&mut buf, u8::from(cluster_scoped));
    put_u64(&mut buf, seq);
    put_path(&mut buf, path);
    put_record(&mut buf, record);
    sorter.push(&buf)
}

/// An owner's identity: its kind, namespace and name, then 0 for "the backup holds it" or 1
/// and the sequence number of an item naming it as controller.
fn owner_record(kind: &str, ns: Option<&str>, name: &str, naming: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, kind);
    put_str(&mut out, ns.unwrap_or(""));
    put_str(&mut out, name);
    match naming {
        None => put_u8(&mut out, 0),
        Some(seq) => {
            put_u8(&mut out, 1);
            put_u64(&mut out, seq);
        }
    }
    out
}

/// The sequence numbers of items whose controller the backup holds, ascending (repeats
/// possible): a sort-merge join of the owners items name with the items there are.
fn owned_items(items: &Items) -> io::Result<Sorted> {
    let mut refs = Sorter::default();
    for (seq, item) in items.iter().enumerate() {
        let (path, entry) = item?;
        let Entry::Item { head, .. } = entry else {
            continue;
        };
        let ns = path.namespace.as_deref();
        refs.push(&owner_record(&head.kind, ns, &path.name, None))?;
        for (kind, name) in &head.controllers {
            refs.push(&owner_record(kind, ns, name, Some(seq as u64)))?;
        }
    }
    let mut owned = Sorter::default();
    let mut owner: Vec<u8> = Vec::new();
    let mut held = false;
    for r in refs.finish()? {
        let r = r?;
        let mut f = Fields::new(&r);
        f.str()?;
        f.str()?;
        f.str()?;
        let key = &r[..r.len() - f.rest().len()];
        if key != owner.as_slice() {
            owner = key.to_vec();
            held = false;
        }
        // "Held" sorts before the items naming it.
        match f.u8()? {
            0 => held = true,
            _ if held => owned.push(&f.u64()?.to_be_bytes())?,
            _ => {}
        }
    }
    owned.finish()
}

/// Walks the ascending owned sequence numbers alongside the items.
struct OwnedSeqs {
    seqs: Option<Sorted>,
    next: Option<u64>,
}

impl OwnedSeqs {
    fn contains(&mut self, seq: u64) -> io::Result<bool> {
        while self.next.is_none_or(|n| n < seq) {
            match self.seqs.as_mut().and_then(Iterator::next) {
                Some(r) => self.next = Some(Fields::new(&r?).u64()?),
                None => {
                    self.seqs = None;
                    return Ok(false);
                }
            }
        }
        Ok(self.next == Some(seq))
    }
}

/// Chooses what to restore: applies skip rules and the filter; logs what it leaves out.
///
/// Memory: passes over `items` on disk; the controller-owner rule is a join on disk
/// ([`owned_items`], only when some item names a controller); what stays in memory is per
/// namespace and per group-resource.
pub(super) fn plan(
    items: &Items,
    filter: &ResourceFilter,
    journal: &mut Journal,
) -> io::Result<Plan> {
    let order = restore_order(items.resources.iter().cloned());
    let rank: HashMap<&GroupResource, u32> = order
        .iter()
        .enumerate()
        .map(|(i, gr)| (gr, i as u32))
        .collect();
    let rank_of = |path: &ItemPath| -> io::Result<u32> {
        rank.get(&GroupResource::new(&path.group, &path.resource))
            .copied()
            .ok_or_else(|| io::Error::other(format!("{path}: its resource was not summarised")))
    };
    let mut owned = OwnedSeqs {
        seqs: (items.with_controllers > 0)
            .then(|| owned_items(items))
            .transpose()?,
        next: None,
    };
    let mut planned = Sorter::default();
    let mut total = 0;
    let mut used_namespaces = BTreeSet::new();
    let mut used_groups = BTreeSet::new();
    // Cluster-scoped items are chosen once every namespaced one has been seen.
    let mut cluster = RecordWriter::new()?;
    for (seq, item) in items.iter().enumerate() {
        let seq = seq as u64;
        let (path, entry) = item?;
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
        if !head.controllers.is_empty() && owned.contains(seq)? {
            journal.log(
                "info",
                format!("{path} skipped: its controller owner is restored and recreates it"),
            );
            continue;
        }
        let Some(ns) = path.namespace.as_deref() else {
            let mut buf = Vec::new();
            put_u64(&mut buf, seq);
            put_path(&mut buf, &path);
            put_record(&mut buf, record);
            cluster.push(&buf)?;
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
            push_planned(&mut planned, rank_of(&path)?, false, seq, &path, record)?;
            total += 1;
        }
    }
    for item in cluster.finish()?.iter() {
        let item = item?;
        let mut f = Fields::new(&item);
        let seq = f.u64()?;
        let p = Planned {
            path: get_path(&mut f)?,
            record: get_record(&mut f)?,
        };
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
            push_planned(
                &mut planned,
                rank_of(&p.path)?,
                true,
                seq,
                &p.path,
                p.record,
            )?;
            total += 1;
        }
    }
    Ok(Plan {
        order,
        total,
        namespaces: used_namespaces,
        items: PlannedItems(planned.finish()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(path: &str, object: Value, filter: &ResourceFilter) -> (ItemPath, Entry) {
        let path = ItemPath::parse(path).unwrap();
        let data = serde_json::to_vec(&object).unwrap();
        let entry = Entry::of(
            &path,
            &data,
            Record::from_parts(0, data.len() as u64),
            filter,
        );
        (path, entry)
    }

    fn owned_by(kind: &str, name: &str) -> Value {
        json!([{ "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "1", "controller": true }])
    }

    fn names(plan: Plan) -> Vec<String> {
        plan.items.map(|p| p.unwrap().1.path.to_string()).collect()
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
        let planned = plan(&Items::of(entries), &filter, &mut journal).unwrap();
        assert_eq!(planned.total, 3);
        // In restore order: Velero restores ReplicaSets before Deployments.
        assert_eq!(
            names(planned),
            [
                "replicasets.apps/app/orphan-1",
                "replicasets.apps/other/web-2",
                "deployments.apps/app/web",
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
        let planned = plan(&Items::of(entries), &filter, &mut Journal::default()).unwrap();
        assert_eq!(planned.namespaces, BTreeSet::from(["app".to_string()]));
        // In restore order: namespaces first.
        assert_eq!(names(planned), ["namespaces/app", "configmaps/app/web"]);
    }

    /// Adds one copy of an item to `builder` (position `pos`, plain or not) and returns the
    /// record its body would have.
    fn copy(builder: &mut ItemsBuilder, pos: u64, path: &str, plain: bool) -> Record {
        let path = ItemPath::parse(path).unwrap();
        let data = serde_json::to_vec(
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": path.name}}),
        )
        .unwrap();
        let record = Record::from_parts(pos * 1000, data.len() as u64);
        builder.add(pos, &path, plain, &data, record).unwrap();
        record
    }

    #[test]
    fn one_copy_of_each_item_is_kept_in_tarball_order() {
        let mut b = ItemsBuilder::new(ResourceFilter::default());
        let s = "resources/secrets/namespaces/x/s.json";
        let t = "resources/secrets/namespaces/x/t.json";
        let u = "resources/secrets/namespaces/x/u.json";
        let pref_s = copy(&mut b, 0, s, false);
        copy(&mut b, 1, t, false);
        let plain_t = copy(&mut b, 2, t, true);
        let plain_u = copy(&mut b, 3, u, true);
        copy(&mut b, 4, s, false);
        copy(&mut b, 5, u, false);
        copy(&mut b, 6, t, true);
        let items = b.finish().unwrap();
        assert_eq!(items.len(), 3);
        let kept: Vec<(String, Record)> = items
            .iter()
            .map(|i| match i.unwrap() {
                (path, Entry::Item { record, .. }) => (path.name, record),
                (path, Entry::Invalid(e)) => panic!("{path}: {e}"),
            })
            .collect();
        // s: only preferred copies, the first wins; t: the first plain copy, at t's first
        // position; u: its plain copy.
        assert_eq!(
            kept,
            [
                ("s".into(), pref_s),
                ("t".into(), plain_t),
                ("u".into(), plain_u)
            ]
        );
        // Read as often as needed.
        assert_eq!(items.iter().count(), 3);
    }

    #[test]
    fn groups_come_in_restore_order_each_in_tarball_order() {
        let filter = ResourceFilter::default();
        let mut entries = Vec::new();
        for i in 0..3 {
            entries.push(entry(
                &format!("resources/deployments.apps/namespaces/app/d{i}.json"),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d{i}")}}),
                &filter,
            ));
            entries.push(entry(
                &format!("resources/configmaps/namespaces/app/c{i}.json"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}}),
                &filter,
            ));
        }
        entries.push(entry(
            "resources/namespaces/cluster/app.json",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            &filter,
        ));
        let planned = plan(&Items::of(entries), &filter, &mut Journal::default()).unwrap();
        assert_eq!(planned.total, 7);
        let order: Vec<String> = planned.order.iter().map(|gr| gr.to_string()).collect();
        assert_eq!(order, ["namespaces", "configmaps", "deployments.apps"]);
        let got: Vec<(usize, String)> = planned
            .items
            .map(|p| {
                let (rank, p) = p.unwrap();
                (rank, p.path.name)
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "app"),
                (1, "c0"),
                (1, "c1"),
                (1, "c2"),
                (2, "d0"),
                (2, "d1"),
                (2, "d2")
            ]
            .map(|(r, n)| (r, n.to_string()))
        );
    }

    #[test]
    fn many_owned_items_are_found_without_holding_them() {
        let filter = ResourceFilter::default();
        let mut entries = Vec::new();
        // 3000 ReplicaSets, every third one's Deployment in the backup.
        for i in 0..3000 {
            if i % 3 == 0 {
                entries.push(entry(
                    &format!("resources/deployments.apps/namespaces/app/d{i}.json"),
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d{i}")}}),
                    &filter,
                ));
            }
            entries.push(entry(
                &format!("resources/replicasets.apps/namespaces/app/r{i}.json"),
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": format!("r{i}"), "ownerReferences": owned_by("Deployment", &format!("d{i}"))}}),
                &filter,
            ));
        }
        let mut journal = Journal::default();
        let planned = plan(&Items::of(entries), &filter, &mut journal).unwrap();
        assert_eq!(planned.total, 1000 + 2000);
        let names = names(planned);
        assert!(names.contains(&"replicasets.apps/app/r1".to_string()));
        assert!(!names.contains(&"replicasets.apps/app/r3".to_string()));
        assert!(
            journal
                .log_text()
                .contains("r3 skipped: its controller owner")
        );
    }
}
