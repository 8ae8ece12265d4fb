//! One restore run: download and verify the backup's tarball, choose the items, then create
//! them group by group in Velero's priority order, several at a time within a group.
//!
//! The whole tarball is read (and its SHA-256 checked against the manifest) before anything is
//! created, so a corrupted backup is refused instead of half-restored. Nothing per item stays
//! in memory, so a restore's memory does not grow with the backup:
//! - the tarball is downloaded to a temporary file and each item's JSON is spooled to another
//!   ([`spool`](super::spool));
//! - each item's summary (path, planning head, spool offset and length) goes to a temporary
//!   file too, and the plan is made in passes over it and comes out of an external sort in
//!   restore order ([`plan`](super::plan), [`spill`](super::spill));
//! - a blocking task reads the planned items in that order with their bodies, in batches of at
//!   most 1 MiB, and hands them over a bounded channel, one channel per group, to the creates,
//!   [`CREATE_CONCURRENCY`] at a time;
//! - each item's outcome goes to the report's temporary file
//!   ([`ItemOutcomes`](super::report::ItemOutcomes)), and each restored object's line of the
//!   resource list to an external sort, streamed at the end into a gzipped temporary file,
//!   which is uploaded from there.
//!
//! The temporary files disappear when the run ends, however it ends.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{BackupKind, EngineError, ExistingResourcePolicy, Phase, RestoreSpec};
use backup_storage::{BackupName, Repository};
use bytes::Bytes;
use futures::{StreamExt, stream};
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;
use tokio::sync::mpsc;

use super::collect::{Journal, ResourceListSpill, SharedJournal, SharedStatus, lock};
use super::errors::storage_error;
use super::lookup::RecordData;
use super::plan::{ItemsBuilder, Plan, Planned, PlannedItems, plan};
use super::report::{Action, ItemOutcome, RestoreReport};
use super::sanitize::{BACKUP_NAME_LABEL, PrepareOptions, RESTORE_NAME_LABEL, prepare};
use super::spool::{Spool, SpoolError, spool_tarball};
use super::verify::{Verification, differences};
use crate::format::pipe::ChannelReader;
use crate::format::{BackupFiles, ItemPath, RestoreFiles, gzip_bytes, gzip_json};

/// Creates in flight within one priority group.
const CREATE_CONCURRENCY: usize = 32;
/// Most items read from the spool in one batch.
const BATCH_ITEMS: usize = 256;
/// Most bytes of bodies in one batch (a batch holds at least one item).
const BATCH_BYTES: u64 = 1024 * 1024;
/// Batches read ahead of the creates, per group.
const BATCHES_AHEAD: usize = 2;
/// How long to wait for a restored CRD to be Established.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a restore run needs.
pub struct RestoreRun {
    /// Target cluster.
    pub client: Client,
    /// Scoped repository holding the backup.
    pub repo: Repository,
    /// Restore name.
    pub name: BackupName,
    /// Backup to restore.
    pub backup: BackupName,
    /// Whether Velero wrote it (no manifest of ours to verify its tarball against).
    pub velero_written: bool,
    /// What to restore and how.
    pub spec: RestoreSpec,
    /// Live status.
    pub status: SharedStatus,
    /// Live report.
    pub report: Arc<Mutex<RestoreReport>>,
    /// The spec's resource modifiers, compiled.
    pub modifiers: Option<backup_core::resource_modifiers::CompiledModifiers>,
    /// Set for a restore drill.
    pub drill: Option<DrillOptions>,
}

/// What makes a restore a drill: it writes only to scratch namespaces, which carry a label, and
/// reads every restored object back to compare it with what it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillOptions {
    /// Each namespace of the backup is restored into `<prefix><namespace>` (one the spec maps
    /// keeps its mapping); empty: the same names, for a cluster kept for drills.
    pub namespace_prefix: String,
    /// The label (key, value) on every namespace the restore creates, so that the drill's
    /// cleanup finds them all, also after a crash cut the drill short.
    pub label: (String, String),
}

/// How a warning ends when an object already existed and policy `none` left it alone; callers
/// that summarise such warnings match on it.
pub const EXISTS_LEFT_UNCHANGED: &str =
    "it already exists; left unchanged (existingResourcePolicy none)";

fn api_resource(path: &ItemPath, obj: &Value) -> Option<ApiResource> {
    let api_version = obj["apiVersion"].as_str()?.to_string();
    let kind = obj["kind"].as_str()?.to_string();
    let version = api_version.rsplit('/').next()?.to_string();
    Some(ApiResource {
        group: path.group.clone(),
        version,
        api_version,
        kind,
        plural: path.resource.clone(),
    })
}

/// What a drill expects the target to serve for `sent`: everything but the labels the restore
/// itself adds (the backup's and restore's names, the drill's), which an object that was
/// already there rightly lacks.
fn expected(sent: &Value, drill: &DrillOptions) -> Value {
    let mut expected = sent.clone();
    if let Some(labels) = expected["metadata"]["labels"].as_object_mut() {
        for key in [
            BACKUP_NAME_LABEL,
            RESTORE_NAME_LABEL,
            drill.label.0.as_str(),
        ] {
            labels.remove(key);
        }
    }
    expected
}

/// Errors the apiserver means as "try again shortly".
fn is_transient(s: &kube::core::Status) -> bool {
    matches!(s.code, 429 | 503 | 504) || (s.code == 500 && s.reason == "ServerTimeout")
}

fn is_builtin_group(group: &str) -> bool {
    ["", "apps", "batch", "autoscaling", "policy", "extensions"].contains(&group)
        || group.ends_with(".k8s.io")
}

/// What restoring one item came to.
struct Done {
    /// The CRD's name, when it created or updated a CRD (to wait until it is Established).
    crd: Option<String>,
    outcome: ItemOutcome,
    /// Its line of the resource list (`apiVersion/Kind`, `namespace/name`) when it was restored
    /// or already there.
    listed: Option<(String, String)>,
}

impl Done {
    fn failed(outcome: ItemOutcome) -> Self {
        Done {
            crd: None,
            outcome,
            listed: None,
        }
    }
}

/// Planned items with their bodies (or why a body could not be read).
type Batch = Vec<(Planned, std::io::Result<Vec<u8>>)>;

/// Reads the planned items in restore order with their bodies (blocking) and hands them to the
/// creates: for each group, its rank in the plan's order and a channel of its items in batches
/// (at most [`BATCH_ITEMS`] items or [`BATCH_BYTES`] bytes of bodies). A group's channel is
/// closed before the next group is announced, so the next group starts once this one is done.
/// Stops early, without error, when the creates stop listening.
fn feed(
    items: PlannedItems,
    spool: &Spool,
    groups: &mpsc::Sender<(usize, mpsc::Receiver<Batch>)>,
) -> std::io::Result<()> {
    let mut group: Option<(usize, mpsc::Sender<Batch>)> = None;
    let mut batch: Batch = Vec::new();
    let mut bytes = 0;
    for item in items {
        let (rank, p) = item?;
        let len = p.record.len();
        let same_group = group.as_ref().is_some_and(|(current, _)| *current == rank);
        if !same_group || batch.len() >= BATCH_ITEMS || bytes + len > BATCH_BYTES {
            if let Some((_, tx)) = &group
                && !batch.is_empty()
                && tx.blocking_send(std::mem::take(&mut batch)).is_err()
            {
                return Ok(());
            }
            bytes = 0;
        }
        if !same_group {
            // Closed first: the creates finish this group before they take the next.
            drop(group.take());
            let (tx, rx) = mpsc::channel(BATCHES_AHEAD);
            if groups.blocking_send((rank, rx)).is_err() {
                return Ok(());
            }
            group = Some((rank, tx));
        }
        bytes += len;
        let body = spool.read(p.record);
        batch.push((p, body));
    }
    if let Some((_, tx)) = &group
        && !batch.is_empty()
    {
        // The creates may have stopped listening: nothing left to do either way.
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

impl RestoreRun {
    /// Downloads the tarball to a temporary file, then spools its items, summarises each one
    /// and plans the restore. Fails, having created nothing, unless the download verified
    /// against the manifest and the gzip and tar streams were read to their end.
    async fn load(&self, journal: &SharedJournal) -> Result<(Arc<Spool>, Plan), EngineError> {
        let files = BackupFiles::new(&self.backup).map_err(storage_error)?;
        let mut stream = if self.velero_written {
            self.repo
                .open_velero_file(BackupKind::Resources, &self.backup, &files.tarball)
                .await
        } else {
            self.repo
                .open_artifact(BackupKind::Resources, &self.backup, &files.tarball)
                .await
                .map(|stream| stream.boxed())
        }
        .map_err(storage_error)?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        let filter = self.spec.options.filter.clone();
        let journal = Arc::clone(journal);
        let reader = tokio::task::spawn_blocking(move || {
            let mut items = ItemsBuilder::new(filter.clone());
            let spool = spool_tarball(ChannelReader::new(rx), |pos, path, plain, data, record| {
                items.add(pos, &path, plain, data, record)
            })?;
            let planned = items
                .finish()
                .and_then(|items| plan(&items, &filter, &mut lock(&journal)))
                .map_err(SpoolError::Local)?;
            Ok::<_, SpoolError>((Arc::new(spool), planned))
        });
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            let chunk = chunk.map_err(std::io::Error::other);
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        reader
            .await
            .map_err(|e| EngineError::Other(format!("tarball reader crashed: {e}")))?
            .map_err(|e| match e {
                SpoolError::Refused(e) => EngineError::Invalid(format!(
                    "backup {} cannot be restored, its tarball was refused: {e}",
                    self.backup
                )),
                SpoolError::Local(e) => EngineError::Other(format!(
                    "restore {} could not keep the backup's items in temporary files: {e}",
                    self.name
                )),
            })
    }

    /// Runs the restore to a terminal phase.
    pub async fn run(mut self) -> Result<(), EngineError> {
        let started = Timestamp::now();
        self.status.update(|s| {
            s.phase = Phase::InProgress;
            s.started = Some(started);
        });
        let journal: SharedJournal = Arc::new(Mutex::new(Journal::default()));
        lock(&journal).log(
            "info",
            format!("starting restore {} from backup {}", self.name, self.backup),
        );
        let (spool, plan) = self.load(&journal).await?;
        self.map_to_scratch(&plan.namespaces);
        self.status.add_total(plan.total);
        let Plan {
            order,
            namespaces,
            items,
            ..
        } = plan;
        let (groups_tx, mut groups) = mpsc::channel(1);
        let feeder = tokio::task::spawn_blocking(move || feed(items, &spool, &groups_tx));
        let mut resource_list = ResourceListSpill::default();
        let mut ensured_namespaces = false;
        while let Some((rank, batches)) = groups.recv().await {
            let resource = order[rank].to_string();
            if !ensured_namespaces
                && resource != "namespaces"
                && !resource.starts_with("customresourcedefinitions")
            {
                self.ensure_namespaces(&namespaces, &journal).await;
                ensured_namespaces = true;
            }
            let mut batches: mpsc::Receiver<Batch> = batches;
            let mut outcomes = stream::poll_fn(move |cx| batches.poll_recv(cx))
                .flat_map(stream::iter)
                .map(|(p, body)| self.restore_item(p, body, &journal))
                .buffer_unordered(CREATE_CONCURRENCY);
            let mut crds = Vec::new();
            while let Some(done) = outcomes.next().await {
                crds.extend(done.crd);
                if let Some((kind, object)) = &done.listed
                    && !self.spec.options.dry_run
                {
                    resource_list.add(kind, object);
                }
                (self.report.lock().unwrap_or_else(|e| e.into_inner()))
                    .items
                    .push(done.outcome);
            }
            drop(outcomes);
            if !self.spec.options.dry_run {
                for crd in crds {
                    self.wait_established(&crd, &journal).await;
                }
            }
        }
        feeder
            .await
            .map_err(|e| EngineError::Other(format!("reading the planned items crashed: {e}")))?
            .map_err(|e| {
                EngineError::Other(format!(
                    "restore {} could not read its planned items from temporary files: {e}",
                    self.name
                ))
            })?;
        self.finish(started, journal, resource_list).await
    }

    /// Creates target namespaces that items need but the backup does not hold; `namespaces`
    /// are those of the planned namespaced items, as the backup names them.
    async fn ensure_namespaces(&self, namespaces: &BTreeSet<String>, journal: &SharedJournal) {
        if self.spec.options.dry_run {
            return;
        }
        let targets: BTreeSet<String> = namespaces
            .iter()
            .map(|ns| self.spec.target_namespace(ns).to_string())
            .collect();
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        for ns in targets {
            let mut obj = k8s_openapi::api::core::v1::Namespace::default();
            obj.metadata.name = Some(ns.clone());
            if let Some(drill) = &self.drill {
                let (key, value) = drill.label.clone();
                obj.metadata.labels = Some([(key, value)].into());
            }
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => lock(journal).log("info", format!("created namespace {ns}")),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => lock(journal).error(None, format!("creating namespace {ns} failed: {e}")),
            }
        }
    }

    /// A drill's namespaces: every namespace the plan writes to (and each included by name,
    /// whose Namespace object is restored without items) goes to its scratch name, unless the
    /// spec maps it.
    fn map_to_scratch(&mut self, planned: &BTreeSet<String>) {
        let Some(drill) = &self.drill else {
            return;
        };
        let named = self
            .spec
            .options
            .filter
            .included_namespaces
            .iter()
            .filter(|ns| backup_core::validate_dns1123_label(ns).is_ok());
        let mapping = &mut self.spec.options.namespace_mapping;
        for ns in planned.iter().chain(named) {
            if !mapping.contains_key(ns) {
                mapping.insert(ns.clone(), format!("{}{ns}", drill.namespace_prefix));
            }
        }
    }

    /// Records in the report's verification (a drill's only).
    fn verification(&self, record: impl FnOnce(&mut Verification)) {
        if self.drill.is_some() {
            let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
            record(report.verification.get_or_insert_default());
        }
    }

    /// A drill's read-back: the object the target serves must hold every field `sent` holds.
    async fn read_back(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        (resource, object): (&str, String),
        sent: &Value,
    ) {
        match api.get(name).await {
            Ok(served) => match serde_json::to_value(&served) {
                Ok(served) => {
                    let found = differences(sent, &served);
                    self.verification(|v| v.compared(resource, object, &found));
                }
                Err(e) => self.verification(|v| v.mismatch(object, format!("read back: {e}"))),
            },
            Err(e) => {
                let said = backup_kube::errors::summary(&e);
                self.verification(|v| {
                    v.mismatch(object, format!("not served after the restore: {said}"))
                });
            }
        }
    }

    async fn wait_established(&self, name: &str, journal: &SharedJournal) {
        let ar = ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let deadline = tokio::time::Instant::now() + CRD_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(crd) = api.get(name).await {
                let established = crd.data["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                if established {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        lock(journal).warn(
            None,
            format!(
                "CRD {name} was not Established after {} s",
                CRD_TIMEOUT.as_secs()
            ),
        );
    }

    /// Restores one item.
    async fn restore_item(
        &self,
        p: Planned,
        body: std::io::Result<Vec<u8>>,
        journal: &SharedJournal,
    ) -> Done {
        let target_ns = p
            .path
            .namespace
            .as_deref()
            .map(|ns| self.spec.target_namespace(ns).to_string());
        let gr = p.gr();
        let resource = gr.to_string();
        self.verification(|v| v.expect(&resource));
        // Velero matches these lists as it matches included/excluded resources (`*`, globs,
        // `resource.group`); nothing is restored with status when the include list is empty.
        let keep_status = self.spec.options.restore_status.as_ref().is_some_and(|s| {
            !s.included_resources.is_empty()
                && backup_core::ResourceFilter {
                    included_resources: s.included_resources.clone(),
                    excluded_resources: s.excluded_resources.clone(),
                    ..backup_core::ResourceFilter::default()
                }
                .matches_resource(&gr)
        });
        let opts = PrepareOptions {
            backup_name: self.backup.as_str(),
            restore_name: self.name.as_str(),
            namespace_mapping: &self.spec.options.namespace_mapping,
            keep_status,
            preserve_node_ports: self.spec.options.preserve_node_ports.unwrap_or(false),
        };
        let original = body
            .and_then(|data| serde_json::from_slice::<Value>(&data).map_err(std::io::Error::from));
        let original: Value = match original {
            Ok(v) => v,
            Err(e) => {
                lock(journal).error(p.path.namespace.as_deref(), format!("{}: {e}", p.path));
                self.verification(|v| v.mismatch(p.path.to_string(), e.to_string()));
                self.status.add_done(1);
                let outcome = ItemOutcome {
                    resource,
                    namespace: target_ns,
                    name: p.path.name.clone(),
                    action: Action::Failed,
                };
                return Done::failed(outcome);
            }
        };
        let mut original = original;
        if let Some(modifiers) = &self.modifiers {
            // As Velero: on the object as the backup holds it, before namespace mapping.
            for error in modifiers.apply(&mut original, &resource) {
                lock(journal).error(p.path.namespace.as_deref(), format!("{}: {error}", p.path));
            }
        }
        let status_value = original.get("status").cloned();
        let mut object = prepare(original, &gr, &opts);
        if let Some(drill) = &self.drill
            && resource == "namespaces"
            && object["metadata"]["labels"].is_object()
        {
            let (key, value) = &drill.label;
            object["metadata"]["labels"][key] = Value::String(value.clone());
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or(&p.path.name)
            .to_string();
        let where_ = match &target_ns {
            Some(ns) => format!("{resource} {ns}/{name}"),
            None => format!("{resource} {name}"),
        };
        let outcome = |action| ItemOutcome {
            resource: resource.clone(),
            namespace: target_ns.clone(),
            name: name.clone(),
            action,
        };
        let fail = |message: String| {
            self.verification(|v| {
                let problem = message
                    .strip_prefix(&format!("could not restore {where_}: "))
                    .or_else(|| message.strip_prefix(&format!("{where_}: ")))
                    .unwrap_or(&message);
                v.mismatch(where_.clone(), problem.to_string());
            });
            lock(journal).error(target_ns.as_deref(), message);
            self.status.add_done(1);
            Done::failed(outcome(Action::Failed))
        };
        let Some(ar) = api_resource(&p.path, &object) else {
            return fail(format!(
                "{where_}: the backed-up object has no apiVersion/kind"
            ));
        };
        let api: Api<DynamicObject> = match &target_ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let sent = self.drill.as_ref().map(|drill| expected(&object, drill));
        let dynamic: DynamicObject = match serde_json::from_value(object) {
            Ok(d) => d,
            Err(e) => return fail(format!("{where_}: not a Kubernetes object: {e}")),
        };
        let post = PostParams {
            dry_run: self.spec.options.dry_run,
            ..PostParams::default()
        };
        let mut attempts = 0;
        let action = loop {
            attempts += 1;
            match api.create(&post, &dynamic).await {
                Ok(_) => break Action::Created,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    break match self.spec.options.existing_resource_policy {
                        ExistingResourcePolicy::None => {
                            lock(journal).warn(
                                target_ns.as_deref(),
                                format!("could not restore {where_}: {EXISTS_LEFT_UNCHANGED}"),
                            );
                            Action::Skipped
                        }
                        ExistingResourcePolicy::Update => {
                            match self.update(&api, &name, dynamic.clone()).await {
                                Ok(()) => Action::Updated,
                                Err(e) => {
                                    return fail(format!(
                                        "{where_}: updating the existing object failed: {e}"
                                    ));
                                }
                            }
                        }
                    };
                }
                // In a dry run, a namespace or CRD that would be created first is missing.
                Err(kube::Error::Api(s)) if s.code == 404 && self.spec.options.dry_run => {
                    break Action::Created;
                }
                Err(kube::Error::Api(s))
                    if s.code == 404 && !is_builtin_group(&ar.group) && attempts < 40 =>
                {
                    // A just-established CRD takes a moment to be served.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                // The apiserver asks to retry (e.g. a new namespace's token is not issued yet).
                Err(kube::Error::Api(s)) if is_transient(&s) && attempts < 40 => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    let said = backup_kube::errors::summary(&e);
                    return fail(format!("could not restore {where_}: {said}"));
                }
            }
        };
        if keep_status
            && !self.spec.options.dry_run
            && let Some(status) = status_value
        {
            let patch = Patch::Merge(serde_json::json!({ "status": status }));
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &patch)
                .await
            {
                lock(journal).warn(
                    target_ns.as_deref(),
                    format!(
                        "{where_}: restoring status failed: {}",
                        backup_kube::errors::summary(&e)
                    ),
                );
            }
        }
        if let Some(sent) = &sent
            && !self.spec.options.dry_run
        {
            self.read_back(&api, &name, (&resource, where_.clone()), sent)
                .await;
        }
        self.status.add_done(1);
        let crd = (resource == "customresourcedefinitions.apiextensions.k8s.io"
            && action != Action::Skipped)
            .then(|| name.clone());
        let listed = match &target_ns {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        };
        Done {
            crd,
            outcome: outcome(action),
            listed: Some((format!("{}/{}", ar.api_version, ar.kind), listed)),
        }
    }

    /// Overwrites an existing object with the backed-up one (policy `update`), keeping what the
    /// apiserver allocated and will not change (a Service's cluster IPs).
    async fn update(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        mut desired: DynamicObject,
    ) -> Result<(), kube::Error> {
        let existing = api.get(name).await?;
        desired.metadata.resource_version = existing.metadata.resource_version.clone();
        for key in ["clusterIP", "clusterIPs"] {
            if let Some(v) = existing.data["spec"].get(key)
                && desired.data["spec"].is_object()
                && desired.data["spec"].get(key).is_none()
            {
                desired.data["spec"][key] = v.clone();
            }
        }
        let params = PostParams {
            dry_run: self.spec.options.dry_run,
            ..PostParams::default()
        };
        api.replace(name, &params, &desired).await.map(|_| ())
    }

    async fn finish(
        self,
        started: Timestamp,
        journal: SharedJournal,
        resource_list: ResourceListSpill,
    ) -> Result<(), EngineError> {
        let mut journal = std::mem::take(&mut *lock(&journal));
        let phase = if journal.results.errors.is_empty() {
            Phase::Completed
        } else {
            Phase::PartiallyFailed
        };
        let elapsed = Timestamp::now().duration_since(started);
        journal.log(
            "info",
            format!(
                "restore {} finished: phase {phase} in {:.1} s",
                self.name,
                elapsed.as_secs_f64()
            ),
        );
        if !self.spec.options.dry_run {
            let files = RestoreFiles::new(&self.name);
            let io =
                |e: std::io::Error| EngineError::Other(format!("encoding restore results: {e}"));
            let listed = tokio::task::spawn_blocking(move || resource_list.gzip_json())
                .await
                .map_err(|e| EngineError::Other(format!("writing the resource list crashed: {e}")))?
                .map_err(|e| {
                    EngineError::Other(format!(
                        "restore {} could not write its resource list from temporary files: {e}",
                        self.name
                    ))
                })?;
            let writes = vec![
                (
                    files.results,
                    gzip_json(&journal.results).map_err(io)?.into(),
                ),
                (
                    files.logs,
                    gzip_bytes(journal.log_text().as_bytes())
                        .map_err(io)?
                        .into(),
                ),
                (files.resource_list, RecordData::File(listed)),
            ];
            super::lookup::commit_restore_record(
                &self.repo,
                &self.name,
                writes,
                &phase.to_string(),
            )
            .await?;
        }
        {
            let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
            report.dry_run = self.spec.options.dry_run;
            report.results = journal.results.clone();
        }
        self.status.update(|s| {
            s.phase = phase;
            s.completed = Some(Timestamp::now());
            s.errors = journal.results.errors.flatten();
            s.warnings = journal.results.warnings.flatten();
        });
        Ok(())
    }
}
