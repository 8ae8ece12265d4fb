//! One backup run: list every selected kind page by page, stream the items into the tarball
//! while it uploads, then write Velero's side files and commit the manifest last.
//!
//! Memory stays bounded: items flow list page → bounded channel → tar+gzip on a blocking thread
//! → bounded channel of 256 KiB chunks → multipart upload. Only names (resource list, related
//! cluster objects) are kept for the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use backup_core::{
    BackupKind, BackupSpec, BackupStatus, EngineError, GroupResource, ItemRef, Phase,
};
use backup_storage::{BackupName, Repository};
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, TypeMeta};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use super::collect::{Journal, SharedJournal, SharedStatus, lock};
use super::errors::{engine_error, storage_error};
use crate::format::pipe::{ChannelWriter, receiver_stream};
use crate::format::{BackupFiles, BackupObject, ItemPath, TarballWriter, gzip_bytes, gzip_json};
use backup_kube::discovery::Discovered;

/// Page size of every LIST, as Velero and kubectl use.
pub const PAGE_SIZE: u32 = 500;
/// Kinds listed concurrently.
const LIST_CONCURRENCY: usize = 4;
/// Items buffered between the listers and the tar thread.
const ITEM_BUFFER: usize = 512;
/// Up to this many selected namespaces, kinds are listed namespace by namespace.
const PER_NAMESPACE_LISTS: usize = 8;
/// Above this many related objects of one kind, one LIST beats a GET each.
const RELATED_GETS: usize = 16;

/// How listing the additional items of one kind went.
enum Listed {
    /// Every page was read.
    Done,
    /// Not listed (too few to be worth a LIST, or the LIST was refused: a reader may be allowed
    /// to get them by name only): they are fetched one by one.
    ByName,
    /// It failed otherwise (reported).
    Failed,
}
/// The label that keeps an object out of every backup.
pub const EXCLUDE_LABEL: &str = "velero.io/exclude-from-backup";

/// A namespaced object backed up whatever the filter says: Velero's "additional items", which
/// a BackupItemAction returns for an item and which skip the include/exclude filters (the
/// exclude label still wins). The caller knows why they belong together, the engine does not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AdditionalItem {
    /// Its kind, e.g. `secrets` or `configmaps`.
    pub group_resource: GroupResource,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One item on its way into the tarball.
struct TarItem {
    path: ItemPath,
    version: String,
    json: Vec<u8>,
}

/// Everything a backup run needs.
pub struct BackupRun {
    /// Cluster to read.
    pub client: Client,
    /// Scoped repository to write.
    pub repo: Repository,
    /// Backup name.
    pub name: BackupName,
    /// What to back up.
    pub spec: BackupSpec,
    /// Location name written into the Backup object.
    pub storage_location: String,
    /// Live status.
    pub status: SharedStatus,
    /// Discovered kinds.
    pub resources: Vec<Discovered>,
    /// API groups discovery could not read (recorded as warnings).
    pub discovery_warnings: Vec<String>,
    /// Objects backed up besides the filter's.
    pub additional: Vec<AdditionalItem>,
}

/// Cluster-scoped objects related to included items, fetched by name.
#[derive(Default)]
struct Related {
    by_resource: BTreeMap<GroupResource, BTreeSet<String>>,
}

impl Related {
    fn add(&mut self, gr: &str, name: &str) {
        self.by_resource
            .entry(GroupResource::parse(gr))
            .or_default()
            .insert(name.to_string());
    }
}

/// Shared state of the listers.
struct Listing {
    client: Client,
    spec: BackupSpec,
    status: SharedStatus,
    journal: SharedJournal,
    related: Arc<Mutex<Related>>,
    items: mpsc::Sender<TarItem>,
}

fn is_excluded(obj: &DynamicObject) -> bool {
    obj.labels().get(EXCLUDE_LABEL).map(String::as_str) == Some("true")
}

impl Listing {
    /// Sends one object to the tarball and records it; `Err` when the tar writer stopped.
    async fn emit(&self, d: &Discovered, mut obj: DynamicObject) -> Result<(), ()> {
        obj.types = Some(TypeMeta {
            api_version: d.api.api_version.clone(),
            kind: d.api.kind.clone(),
        });
        let namespace = obj.namespace().filter(|_| d.namespaced);
        let name = obj.name_any();
        let json = match serde_json::to_vec(&obj) {
            Ok(json) => json,
            Err(e) => {
                lock(&self.journal).error(
                    namespace.as_deref(),
                    format!("{} {name}: cannot serialise: {e}", d.group_resource),
                );
                return Ok(());
            }
        };
        {
            let mut j = lock(&self.journal);
            j.resource_list
                .add(&d.api.api_version, &d.api.kind, namespace.as_deref(), &name);
        }
        self.note_related(d, &obj, namespace.as_deref());
        let path = ItemPath {
            resource: d.api.plural.clone(),
            group: d.api.group.clone(),
            namespace,
            name,
            version_dir: None,
        };
        let item = TarItem {
            path,
            version: d.api.version.clone(),
            json,
        };
        self.items.send(item).await.map_err(|_| ())?;
        self.status.add_done(1);
        Ok(())
    }

    /// Remembers cluster-scoped objects this item depends on.
    fn note_related(&self, d: &Discovered, obj: &DynamicObject, namespace: Option<&str>) {
        let mut related = self.related.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = namespace {
            related.add("namespaces", ns);
        }
        let builtin = ["", "apps", "batch", "autoscaling", "policy", "extensions"];
        if !builtin.contains(&d.api.group.as_str()) && !d.api.group.ends_with(".k8s.io") {
            related.add(
                "customresourcedefinitions.apiextensions.k8s.io",
                &format!("{}.{}", d.api.plural, d.api.group),
            );
        }
        let gr = d.group_resource.to_string();
        if gr == "persistentvolumeclaims"
            && let Some(pv) = obj.data["spec"]["volumeName"].as_str()
        {
            related.add("persistentvolumes", pv);
        }
        if gr == "rolebindings.rbac.authorization.k8s.io"
            && obj.data["roleRef"]["kind"] == "ClusterRole"
            && let Some(role) = obj.data["roleRef"]["name"].as_str()
        {
            related.add("clusterroles.rbac.authorization.k8s.io", role);
        }
    }

    /// Lists one kind (in `namespaces`, or everywhere when `None`) page by page.
    async fn list_kind(&self, d: &Discovered, namespaces: Option<&[String]>) -> Result<(), ()> {
        let scopes: Vec<Option<&str>> = match namespaces {
            Some(list) if d.namespaced => list.iter().map(|n| Some(n.as_str())).collect(),
            _ => vec![None],
        };
        for scope in scopes {
            let api: Api<DynamicObject> = match scope {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &d.api),
                None => Api::all_with(self.client.clone(), &d.api),
            };
            // The next page is requested before this one is written out, so the apiserver
            // prepares it while we parse and tar (one page ahead: memory stays two pages).
            let fetch = |params: ListParams| {
                let api = api.clone();
                tokio::spawn(async move { api.list(&params).await })
            };
            let params = ListParams::default().limit(PAGE_SIZE);
            let mut next = Some(fetch(params.clone()));
            while let Some(request) = next.take() {
                let page = match request.await {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        self.list_failed(d, scope, e);
                        break;
                    }
                    Err(e) => {
                        self.list_failed(d, scope, kube::Error::Service(Box::new(e)));
                        break;
                    }
                };
                if let Some(token) = page.metadata.continue_.as_deref().filter(|c| !c.is_empty()) {
                    next = Some(fetch(params.clone().continue_token(token)));
                }
                let selected: Vec<DynamicObject> = page
                    .items
                    .into_iter()
                    .filter(|obj| self.selected(d, obj))
                    .collect();
                self.status.add_total(selected.len() as u64);
                for obj in selected {
                    if self.emit(d, obj).await.is_err() {
                        if let Some(pending) = next {
                            pending.abort();
                        }
                        return Err(());
                    }
                }
            }
        }
        Ok(())
    }

    fn selected(&self, d: &Discovered, obj: &DynamicObject) -> bool {
        if is_excluded(obj) {
            return false;
        }
        let item = ItemRef {
            group_resource: d.group_resource.clone(),
            namespace: obj.namespace().filter(|_| d.namespaced),
            name: obj.name_any(),
            labels: obj.labels().clone(),
        };
        self.spec.filter.matches(&item)
    }

    /// Forbidden or vanished kinds are warnings (the backup goes on); others are errors.
    fn list_failed(&self, d: &Discovered, scope: Option<&str>, e: kube::Error) {
        let mut j = lock(&self.journal);
        let what = match scope {
            Some(ns) => format!("{} in namespace {ns}", d.group_resource),
            None => d.group_resource.to_string(),
        };
        match &e {
            kube::Error::Api(s) if s.code == 403 || s.code == 404 || s.code == 405 => {
                let said = backup_kube::errors::summary(&e);
                j.warn(None, format!("could not list {what}, skipped: {said}"));
                j.results
                    .warnings
                    .add_velero(format!("could not list {what}: {said}"));
            }
            _ => j.error(
                scope,
                format!(
                    "listing {what} failed: {}",
                    backup_kube::errors::summary(&e)
                ),
            ),
        }
    }

    /// Fetches named cluster-scoped objects (related to included items): one GET each for a
    /// few, one paged LIST filtered by name for many.
    async fn get_related(&self, d: &Discovered, names: &BTreeSet<String>) -> Result<(), ()> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &d.api);
        if names.len() > RELATED_GETS {
            let mut params = ListParams::default().limit(PAGE_SIZE);
            loop {
                let page = match api.list(&params).await {
                    Ok(page) => page,
                    Err(e) => {
                        self.list_failed(d, None, e);
                        return Ok(());
                    }
                };
                for obj in page.items {
                    if names.contains(&obj.name_any()) && !is_excluded(&obj) {
                        self.status.add_total(1);
                        self.emit(d, obj).await?;
                    }
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => return Ok(()),
                }
            }
        }
        for name in names {
            match api.get_opt(name).await {
                Ok(Some(obj)) if !is_excluded(&obj) => {
                    self.status.add_total(1);
                    self.emit(d, obj).await?;
                }
                Ok(_) => {}
                Err(e) => self.list_failed(d, None, e),
            }
        }
        Ok(())
    }
}

impl Listing {
    /// Fetches the additional items of one kind that the filter did not already select: one
    /// GET each for a few, one paged LIST across namespaces for many, and one GET each again
    /// when that LIST is forbidden (a reader may be allowed to get them by name only, as the
    /// fleet controller may Secrets). An item that does not exist is a warning: the backup
    /// holds what there is.
    async fn get_additional(
        &self,
        d: &Discovered,
        wanted: &BTreeSet<(String, String)>,
    ) -> Result<(), ()> {
        let mut found = BTreeSet::new();
        let listed = match wanted.len() > RELATED_GETS {
            true => self.list_additional(d, wanted, &mut found).await?,
            false => Listed::ByName,
        };
        match listed {
            Listed::Failed => return Ok(()),
            Listed::Done => {}
            Listed::ByName => {
                for (namespace, name) in wanted.difference(&found.clone()) {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(self.client.clone(), namespace, &d.api);
                    match api.get_opt(name).await {
                        Ok(Some(obj)) => {
                            found.insert((namespace.clone(), name.clone()));
                            self.emit_additional(d, obj).await?;
                        }
                        Ok(None) => {}
                        Err(e) => self.list_failed(d, Some(namespace), e),
                    }
                }
            }
        }
        for (namespace, name) in wanted.difference(&found) {
            lock(&self.journal).warn(
                Some(namespace),
                format!(
                    "{} {namespace}/{name} was asked for but does not exist",
                    d.group_resource
                ),
            );
        }
        Ok(())
    }

    /// The additional items of one kind, from one paged LIST across namespaces, into `found`.
    async fn list_additional(
        &self,
        d: &Discovered,
        wanted: &BTreeSet<(String, String)>,
        found: &mut BTreeSet<(String, String)>,
    ) -> Result<Listed, ()> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &d.api);
        let mut params = ListParams::default().limit(PAGE_SIZE);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(s)) if s.code == 403 => return Ok(Listed::ByName),
                Err(e) => {
                    self.list_failed(d, None, e);
                    return Ok(Listed::Failed);
                }
            };
            for obj in page.items {
                let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                if wanted.contains(&key) && !found.contains(&key) {
                    found.insert(key);
                    self.emit_additional(d, obj).await?;
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(Listed::Done),
            }
        }
    }

    /// Emits an additional item unless the filter's listing already did, or it is excluded.
    async fn emit_additional(&self, d: &Discovered, obj: DynamicObject) -> Result<(), ()> {
        if is_excluded(&obj) || self.selected(d, &obj) {
            return Ok(());
        }
        self.status.add_total(1);
        self.emit(d, obj).await
    }
}

/// The namespaces the filter selects, from the cluster's list (or, when that is forbidden,
/// the literal names in the include list).
async fn selected_namespaces(
    client: &Client,
    spec: &BackupSpec,
    journal: &SharedJournal,
) -> Vec<String> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.list_metadata(&Default::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|n| n.name_any())
            .filter(|n| spec.filter.matches_namespace(n))
            .collect(),
        Err(e) => {
            lock(journal).warn(
                None,
                format!(
                    "could not list namespaces ({}); using the included names as given",
                    backup_kube::errors::summary(&e)
                ),
            );
            spec.filter
                .included_namespaces
                .iter()
                .filter(|n| !n.contains(['*', '?']))
                .cloned()
                .collect()
        }
    }
}

impl BackupRun {
    /// Runs the backup to a terminal phase. `Err` means nothing was committed.
    pub async fn run(self) -> Result<BackupStatus, EngineError> {
        let started = Timestamp::now();
        self.status.update(|s| {
            s.phase = Phase::InProgress;
            s.started = Some(started);
        });
        let journal: SharedJournal = Arc::new(Mutex::new(Journal::default()));
        lock(&journal).log(
            "info",
            format!("starting backup {} (direct engine)", self.name),
        );
        for w in &self.discovery_warnings {
            lock(&journal).warn(None, w.clone());
        }
        let files = BackupFiles::new(&self.name).map_err(storage_error)?;
        let mut writer = self
            .repo
            .begin_backup(BackupKind::Resources, &self.name)
            .await
            .map_err(storage_error)?;

        let (item_tx, mut item_rx) = mpsc::channel::<TarItem>(ITEM_BUFFER);
        let (byte_tx, byte_rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        let tar_thread = tokio::task::spawn_blocking(move || {
            let mut tar = TarballWriter::new(ChannelWriter::new(byte_tx))?;
            while let Some(item) = item_rx.blocking_recv() {
                tar.add_item(&item.path, &item.version, &item.json)?;
            }
            let items = tar.items();
            std::io::Write::flush(&mut tar.finish()?)?;
            Ok::<u64, crate::format::TarballError>(items)
        });

        let this = &self;
        let journal_p = journal.clone();
        let produce = async move {
            // Owned here so the item channel closes (and the tarball ends) when listing ends.
            let listing = Listing {
                client: this.client.clone(),
                spec: this.spec.clone(),
                status: this.status.clone(),
                journal: journal_p.clone(),
                related: Arc::default(),
                items: item_tx,
            };
            let namespaces = selected_namespaces(&this.client, &this.spec, &journal_p).await;
            {
                let mut related = listing.related.lock().unwrap_or_else(|e| e.into_inner());
                for ns in &namespaces {
                    related.add("namespaces", ns);
                }
            }
            // Few namespaces: list in each. Many: one cluster-wide list, filtered here (a
            // LIST per namespace costs more round trips than the objects it skips).
            let per_namespace =
                !this.spec.filter.all_namespaces() && namespaces.len() <= PER_NAMESPACE_LISTS;
            let scope = per_namespace.then_some(namespaces.as_slice());
            let namespaced: Vec<Discovered> = this
                .resources
                .iter()
                .filter(|d| d.namespaced && this.spec.filter.matches_resource(&d.group_resource))
                .cloned()
                .collect();
            let listing_ref = &listing;
            let results: Vec<Result<(), ()>> = futures::stream::iter(namespaced)
                .map(|d| async move { listing_ref.list_kind(&d, scope).await })
                .buffer_unordered(LIST_CONCURRENCY)
                .collect()
                .await;
            results.into_iter().collect::<Result<(), ()>>()?;
            // Additional items before the cluster-scoped pass, which adds their namespaces.
            let mut additional: BTreeMap<&GroupResource, BTreeSet<(String, String)>> =
                BTreeMap::new();
            for item in &this.additional {
                additional
                    .entry(&item.group_resource)
                    .or_default()
                    .insert((item.namespace.clone(), item.name.clone()));
            }
            for (group_resource, wanted) in additional {
                match this
                    .resources
                    .iter()
                    .find(|d| d.namespaced && &d.group_resource == group_resource)
                {
                    Some(d) => listing.get_additional(d, &wanted).await?,
                    None => lock(&journal_p).warn(
                        None,
                        format!(
                            "{group_resource} is not a namespaced kind of this cluster: {} \
                             additional item(s) skipped",
                            wanted.len()
                        ),
                    ),
                }
            }
            let related =
                std::mem::take(&mut *listing.related.lock().unwrap_or_else(|e| e.into_inner()));
            for d in this.resources.iter().filter(|d| !d.namespaced) {
                // Namespace objects: exactly the selected namespaces (and those of items).
                let is_namespace = d.group_resource.to_string() == "namespaces";
                if !is_namespace && this.spec.filter.matches_cluster_resource(&d.group_resource) {
                    listing.list_kind(d, None).await?;
                } else if let Some(names) = related.by_resource.get(&d.group_resource)
                    && (is_namespace || this.spec.filter.include_cluster_resources != Some(false))
                {
                    listing.get_related(d, names).await?;
                }
            }
            Ok::<(), ()>(())
        };
        let upload = writer.put_artifact_stream(&files.tarball, receiver_stream(byte_rx));
        let (produced, uploaded) = tokio::join!(produce, upload);
        let tarred = tar_thread
            .await
            .map_err(|e| EngineError::Other(format!("tarball writer crashed: {e}")));
        let failure = match (uploaded, tarred) {
            (Err(e), _) => Some(storage_error(e)),
            (_, Err(e)) => Some(e),
            (_, Ok(Err(e))) => Some(EngineError::Other(format!(
                "writing the tarball failed: {e}"
            ))),
            _ if produced.is_err() => Some(EngineError::Other("the tarball writer stopped".into())),
            _ => None,
        };
        if let Some(e) = failure {
            let _ = writer.abort().await;
            return Err(e);
        }

        self.status.set_phase(Phase::Finalizing);
        let completed = Timestamp::now();
        let mut journal = std::mem::take(&mut *lock(&journal));
        journal.resource_list.sort();
        let status = self.status.get();
        let phase = if journal.results.errors.is_empty() {
            Phase::Completed
        } else {
            Phase::PartiallyFailed
        };
        journal.log(
            "info",
            format!(
                "backup {} finished: phase {phase}, {} items, {} warnings, {} errors",
                self.name,
                status.progress.items_done,
                journal.results.warnings.len(),
                journal.results.errors.len()
            ),
        );
        let metadata = self.finished_object(started, completed, phase, &status, &mut journal);
        let side_files = match metadata.and_then(|object| {
            let io =
                |e: std::io::Error| EngineError::Other(format!("encoding backup metadata: {e}"));
            let object_json = serde_json::to_vec_pretty(&object.to_json())
                .map_err(|e| EngineError::Other(format!("encoding velero-backup.json: {e}")))?;
            Ok((
                object,
                [
                    (
                        &files.resource_list,
                        gzip_json(&journal.resource_list).map_err(io)?,
                    ),
                    (&files.results, gzip_json(&journal.results).map_err(io)?),
                    (
                        &files.logs,
                        gzip_bytes(journal.log_text().as_bytes()).map_err(io)?,
                    ),
                    (&files.backup_object, object_json),
                ],
            ))
        }) {
            Ok(files) => files,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        let (object, side_files) = side_files;
        let expiration = object.expiration;
        for (name, data) in side_files {
            if let Err(e) = writer.put_artifact_bytes(name, Bytes::from(data)).await {
                let _ = writer.abort().await;
                return Err(storage_error(e));
            }
        }
        writer
            .commit(super::stored::manifest_attributes(&object), expiration)
            .await
            .map_err(storage_error)?;
        self.status.update(|s| {
            s.phase = phase;
            s.completed = Some(completed);
            s.progress.total_items = s.progress.items_done;
            s.errors = journal.results.errors.flatten();
            s.warnings = journal.results.warnings.flatten();
        });
        Ok(self.status.get())
    }
}

impl BackupRun {
    /// The `velero-backup.json` of the finished backup, recording what actually happened: the
    /// direct engine copies no volume data, so volume snapshots and file-system backup are
    /// recorded as off whatever the spec asked, and a spec that asked says so in the log.
    fn finished_object(
        &self,
        started: Timestamp,
        completed: Timestamp,
        phase: Phase,
        status: &BackupStatus,
        journal: &mut Journal,
    ) -> Result<BackupObject, EngineError> {
        let ttl = jiff::SignedDuration::try_from(self.spec.ttl.as_duration()).map_err(|_| {
            EngineError::Invalid(format!(
                "ttl {} is too long to compute an expiration time; use a shorter ttl",
                self.spec.ttl
            ))
        })?;
        let expiration = started.checked_add(ttl).map_err(|_| {
            EngineError::Invalid(format!(
                "ttl {} runs past the last representable time; use a shorter ttl",
                self.spec.ttl
            ))
        })?;
        let mut spec = self.spec.clone();
        if spec.snapshot_volumes || spec.default_volumes_to_fs_backup {
            journal.log(
                "info",
                "the direct engine copies no volume data: volume snapshots and file-system \
                 backup are recorded as off (use the velero engine for volume data)",
            );
        }
        spec.snapshot_volumes = false;
        spec.default_volumes_to_fs_backup = false;
        Ok(BackupObject {
            name: self.name.to_string(),
            spec,
            storage_location: self.storage_location.clone(),
            phase,
            started: Some(started),
            completed: Some(completed),
            expiration: Some(expiration),
            total_items: status.progress.items_done,
            items_backed_up: status.progress.items_done,
            errors: journal.results.errors.len() as u64,
            warnings: journal.results.warnings.len() as u64,
        })
    }
}

/// Maps a kube error met before any work started.
pub fn preflight_error(e: kube::Error) -> EngineError {
    engine_error("reading the cluster's API", e)
}
