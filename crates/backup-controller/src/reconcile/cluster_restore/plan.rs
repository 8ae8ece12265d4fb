//! The pure decisions of a ClusterRestore reconcile: from the spec, the previous status and
//! whether this process runs the restore, what to write and whether to start it; then, for a
//! restore to start, what its sources as found mean (why it cannot start, or the status, Event
//! and restore that start it).
//!
//! A ClusterRestore starts at most once. Its status records the generation it started from;
//! from then on only its runs change it. A restore found unfinished and not running here was
//! interrupted (controller restart, lost lease): its unfinished clusters end `Failed`, as
//! Velero does with restores its server was running when it stopped.
//!
//! Before it starts, its sources are checked in the order a user fixes them: the targets, the
//! location, the backup, the namespaces it maps onto, the resource modifiers. The first problem
//! is its `Ready=False` condition; each check's rule is here, the reads are the reconcile's.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use backup_core::resource_modifiers::ResourceModifiers;
use backup_core::{ExistingResourcePolicy, RestoreSpec};
use backup_velero::direct::volumes::{Volume, describe};
use jiff::Timestamp;

use backup_api::cluster_restore::{
    ClusterRestoreResult, ClusterRestoreStatus, READY, ResourceModifiersSource, SourceBackup,
    ValidClusterRestore, aggregate_phase, fail_unfinished, restore_name, was_started,
};
use backup_api::status::{Condition, find, merge_conditions};
use backup_api::{FleetPhase, InvalidField};

pub use crate::reconcile::Blocked;

/// The condition saying a finished restore was edited and will not run again.
pub const IMMUTABLE: &str = "Immutable";

/// The message of clusters whose restore was interrupted.
pub const INTERRUPTED: &str = "interrupted: the controller stopped (restart or lost leadership) \
    while this restore ran; objects restored so far stay in the cluster. Create a new \
    ClusterRestore (with existingResourcePolicy: update to overwrite what was restored) to \
    finish it";

/// How long a restore that cannot start waits before looking again, besides every change of
/// its own: what blocks it may be fixed outside this object (a backup appears, a cluster is
/// added), which does not wake it.
pub const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// What the reconcile knows.
pub struct PlanInput<'a> {
    /// The object's generation.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// The validated spec, or the field to fix.
    pub spec: &'a Result<ValidClusterRestore, InvalidField>,
    /// The status as last written.
    pub previous: &'a ClusterRestoreStatus,
    /// Whether this process claimed the restore (it runs, or its final status is not yet
    /// seen in the cache).
    pub running_here: bool,
}

/// A status to write, and the warning Event to send with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The status.
    pub status: ClusterRestoreStatus,
    /// Why the restore cannot go on, when the status newly says so.
    pub warning: Option<Blocked>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    /// Nothing to write or start.
    Nothing,
    /// Write this status; start nothing.
    Write(Box<Write>),
    /// Resolve the sources of this (valid) spec, then start.
    Start(&'a ValidClusterRestore),
    /// The cache shows the final status this process wrote: release the claim.
    Release,
}

/// Decides what a reconcile does.
pub fn plan<'a>(input: &PlanInput<'a>) -> Decision<'a> {
    let previous = input.previous;
    if input.running_here {
        // The claim is held until the cache shows the final status: released earlier, a
        // reconcile on a view from before the start would start the restore again, and one
        // on a view from before the end would call it interrupted.
        return if previous.completion_timestamp.is_some() {
            Decision::Release
        } else {
            Decision::Nothing
        };
    }
    if was_started(previous) {
        let status = recorded(input);
        return if status == *previous {
            Decision::Nothing
        } else {
            Decision::Write(Box::new(write(previous, status)))
        };
    }
    match input.spec {
        Ok(spec) => Decision::Start(spec),
        Err(field) => {
            let invalid = Blocked::new("InvalidSpec", field.to_string());
            let status = blocked(previous, input.generation, input.now, &invalid);
            Decision::Write(Box::new(write(previous, status)))
        }
    }
}

/// The status of a restore that started and does not run here: its record, with what was
/// left unfinished failed as interrupted, and an edit answered by the `Immutable` condition.
fn recorded(input: &PlanInput<'_>) -> ClusterRestoreStatus {
    let previous = input.previous;
    let mut status = previous.clone();
    status.observed_generation = input.generation;
    if status.phase == Some(FleetPhase::InProgress)
        || status.clusters.iter().any(|c| !c.phase.is_terminal())
    {
        fail_unfinished(&mut status, INTERRUPTED, input.now);
    }
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != IMMUTABLE)
        .cloned()
        .collect();
    if let (Some(started), Some(now)) = (previous.started_generation, input.generation)
        && now > started
    {
        conditions.push(
            Condition::met(
                IMMUTABLE,
                "RestoreAlreadyStarted",
                format!(
                    "this restore started from generation {started}; edits (now generation \
                     {now}) do not run it again: create a new ClusterRestore to restore with \
                     the new spec"
                ),
            )
            .at(input.now, input.generation),
        );
    }
    status.conditions = merge_conditions(&previous.conditions, conditions);
    status
}

/// `status` to write, with a warning when its `Ready` newly says the restore cannot go on.
fn write(previous: &ClusterRestoreStatus, status: ClusterRestoreStatus) -> Write {
    let warning = find(&status.conditions, READY)
        .filter(|ready| !ready.is_true() && find(&previous.conditions, READY) != Some(*ready))
        .map(|ready| Blocked::new(ready.reason.clone(), ready.message.clone()));
    Write { status, warning }
}

/// `previous` with `Ready=False` for `why`: the restore cannot start until it is fixed.
pub fn blocked(
    previous: &ClusterRestoreStatus,
    generation: Option<i64>,
    now: Timestamp,
    why: &Blocked,
) -> ClusterRestoreStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.conditions = merge_conditions(
        &previous.conditions,
        vec![why.condition(READY).at(now, generation)],
    );
    status
}

/// What a restore that cannot start does.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// The status saying why, with its warning; `None` when the status already says it.
    pub write: Option<Write>,
    /// When to look again.
    pub requeue_after: Duration,
}

/// The restore cannot start for `why`: say so (once) and look again after [`LOOK_AGAIN`].
pub fn wait(
    previous: &ClusterRestoreStatus,
    generation: Option<i64>,
    now: Timestamp,
    why: Blocked,
) -> Wait {
    let status = blocked(previous, generation, now, &why);
    Wait {
        write: (status != *previous).then_some(Write {
            status,
            warning: Some(why),
        }),
        requeue_after: LOOK_AGAIN,
    }
}

/// The sources a restore was found to have.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The StorageLocation's name.
    pub location: String,
    /// The backup every target restores.
    pub backup: String,
    /// The resource modifiers to apply.
    pub modifiers: Option<ResourceModifiers>,
    /// Whether the targets restore it through their Velero (it holds volume data, see
    /// [`volume_data_route`]).
    pub through_velero: bool,
}

/// What [`launch`] reads.
pub struct LaunchInput<'a> {
    /// The ClusterRestore's name (its restores are named after it).
    pub name: &'a str,
    /// Its generation.
    pub generation: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// Its validated spec.
    pub spec: &'a ValidClusterRestore,
    /// The status as last written.
    pub previous: &'a ClusterRestoreStatus,
    /// Its sources, all found.
    pub source: &'a Source,
}

/// How a restore starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// The status announcing it, written before it runs.
    pub status: ClusterRestoreStatus,
    /// The `RestoreStarted` Event's message.
    pub announcement: String,
    /// What every target restores.
    pub spec: RestoreSpec,
}

/// The start of a restore whose sources were all found.
pub fn launch(input: &LaunchInput<'_>) -> Launch {
    let (spec, source) = (input.spec, input.source);
    let status = started(
        input.name,
        input.generation,
        input.now,
        spec,
        &source.location,
        &source.backup,
        input.previous,
    );
    let verb = if spec.template.options.dry_run {
        "dry run of restoring"
    } else {
        "restoring"
    };
    Launch {
        status,
        announcement: format!(
            "{verb} backup {} of cluster {} into {}",
            source.backup,
            spec.source_cluster,
            spec.targets.join(", ")
        ),
        spec: RestoreSpec {
            resource_modifiers: source.modifiers.clone(),
            ..spec.restore_spec(&source.backup)
        },
    }
}

/// The status announcing a restore about to start: every target `New`.
pub fn started(
    name: &str,
    generation: Option<i64>,
    now: Timestamp,
    spec: &ValidClusterRestore,
    location: &str,
    backup: &str,
    previous: &ClusterRestoreStatus,
) -> ClusterRestoreStatus {
    let clusters: Vec<ClusterRestoreResult> = spec
        .targets
        .iter()
        .map(|target| ClusterRestoreResult {
            cluster: target.clone(),
            restore_name: restore_name(name, target),
            ..ClusterRestoreResult::default()
        })
        .collect();
    let verb = if spec.template.options.dry_run {
        "planning (dry run) the restore of"
    } else {
        "restoring"
    };
    ClusterRestoreStatus {
        phase: aggregate_phase(&clusters),
        observed_generation: generation,
        started_generation: generation,
        storage_location: Some(location.to_string()),
        backup_name: Some(backup.to_string()),
        start_timestamp: Some(now),
        completion_timestamp: None,
        conditions: merge_conditions(
            &previous.conditions,
            vec![
                Condition::met(
                    READY,
                    "Started",
                    format!(
                        "{verb} backup {backup} of cluster {} from location {location} into {}",
                        spec.source_cluster,
                        spec.targets.join(", ")
                    ),
                )
                .at(now, generation),
            ],
        ),
        clusters,
    }
}

/// The targets are all ManagedClusters of `namespace`, or the first of `missing` (in spec
/// order) is why the restore cannot start.
pub fn targets_found(
    spec: &ValidClusterRestore,
    namespace: &str,
    missing: &[String],
) -> Result<(), Blocked> {
    let Some(name) = missing.first() else {
        return Ok(());
    };
    let message = if spec.targets_defaulted {
        format!(
            "targetClusters is omitted, so the restore goes into the source cluster {name:?}, \
             but it is not a ManagedCluster of namespace {namespace}: name the clusters to \
             restore into in spec.targetClusters"
        )
    } else {
        format!(
            "spec.targetClusters: no ManagedCluster {name:?} in namespace {namespace} (a \
             restore can only reach the clusters of its own project)"
        )
    };
    Err(Blocked::new("ClusterNotFound", message))
}

/// The ClusterBackup whose location the restore may use: the one it restores the newest run
/// of.
pub fn cluster_backup(spec: &ValidClusterRestore) -> Option<&str> {
    match &spec.source_backup {
        SourceBackup::NewestOf(backup) => Some(backup),
        SourceBackup::Named(_) => None,
    }
}

/// The StorageLocation to read: the spec's, else the ClusterBackup's (`of_backup`), else
/// (`None`) the namespace's default.
pub fn wanted_location(spec: &ValidClusterRestore, of_backup: Option<String>) -> Option<String> {
    spec.storage_location.clone().or(of_backup)
}

/// The source cluster cannot name a scope of the location (`error` says why).
pub fn unscoped(error: impl Display) -> Blocked {
    Blocked::new("InvalidSpec", format!("spec.source.cluster: {error}"))
}

/// What to ask storage for: the named backup, or the newest completed run of the
/// ClusterBackup. It is resolved once, so every target restores the same one.
pub fn lookup(spec: &ValidClusterRestore) -> RestoreSpec {
    match &spec.source_backup {
        SourceBackup::Named(name) => RestoreSpec {
            backup_name: Some(name.clone()),
            ..RestoreSpec::default()
        },
        SourceBackup::NewestOf(schedule) => RestoreSpec {
            schedule_name: Some(schedule.clone()),
            ..RestoreSpec::default()
        },
    }
}

/// What storage answered to [`lookup`].
#[derive(Debug, Clone, PartialEq)]
pub enum BackupLookup {
    /// This backup; `unreadable` says why the controller cannot read it, if it cannot.
    Found {
        /// Its name.
        backup: String,
        /// Why it cannot be read (it is encrypted to a key the controller does not hold).
        unreadable: Option<String>,
    },
    /// No such backup.
    NotFound,
    /// An error that retrying does not fix.
    Failed(String),
}

/// How a backup holding volume data may be restored: only by Velero, in a cluster whose
/// Velero holds the backup (its source, backed up through that Velero), since the direct engine
/// would bring the claims back empty. `Ok(false)`: no volume data, the direct engine restores;
/// `Ok(true)`: every target is the source and runs Velero, Velero restores; otherwise refused
/// before anything is created, naming the volumes. `targets` are each target's name and
/// whether its engine is Velero.
pub fn volume_data_route(
    backup: &str,
    volumes: &[Volume],
    source: &str,
    targets: &[(String, bool)],
) -> Result<bool, Blocked> {
    if volumes.is_empty() {
        return Ok(false);
    }
    let elsewhere: Vec<&str> = targets
        .iter()
        .filter(|(name, velero)| name != source || !velero)
        .map(|(name, _)| name.as_str())
        .collect();
    if elsewhere.is_empty() {
        return Ok(true);
    }
    Err(Blocked::new(
        "VolumeDataNotRestorable",
        format!(
            "backup {backup} holds volume data ({}), which only Velero restores, and only in \
             cluster {source}, whose Velero took it; restoring it into {} would bring the \
             volumes back empty: restore into {source} with its engine velero, or leave the \
             namespaces of those volumes out (spec.excludedNamespaces)",
            describe(volumes),
            elsewhere.join(", ")
        ),
    ))
}

/// The backup to restore, or why there is none: `found` in StorageLocation `location`.
pub fn backup_to_restore(
    spec: &ValidClusterRestore,
    namespace: &str,
    location: &str,
    found: BackupLookup,
) -> Result<String, Blocked> {
    match found {
        BackupLookup::Found {
            backup,
            unreadable: None,
        } => Ok(backup),
        BackupLookup::Found {
            backup,
            unreadable: Some(e),
        } => Err(Blocked::new(
            "BackupEncrypted",
            format!(
                "backup {backup} is encrypted and the controller holds no key for it: {e}; \
                 restore it with `backupctl restore create --identity-file`"
            ),
        )),
        BackupLookup::NotFound => {
            let what = match &spec.source_backup {
                SourceBackup::Named(name) => format!("no backup {name:?}"),
                SourceBackup::NewestOf(schedule) => {
                    format!("no completed run of ClusterBackup {schedule:?}")
                }
            };
            let cluster = &spec.source_cluster;
            Err(Blocked::new(
                "BackupNotFound",
                format!(
                    "{what} of cluster {cluster} in StorageLocation {location}; `backupctl \
                     backup list --project {namespace} --cluster {cluster}` lists the backups \
                     there"
                ),
            ))
        }
        BackupLookup::Failed(e) => Err(Blocked::new(
            "BackupUnreadable",
            format!("the source backup cannot be read: {e}"),
        )),
    }
}

/// Whether the namespaces the restore maps onto must not exist in the targets: under policy
/// `none`, one that exists would keep what it holds and get the rest mixed in, so a real
/// restore is refused before it touches anything.
pub fn refuses_existing_namespaces(spec: &ValidClusterRestore) -> bool {
    !spec.template.options.dry_run
        && spec.template.options.existing_resource_policy == ExistingResourcePolicy::None
        && !spec.template.options.namespace_mapping.is_empty()
}

/// What a target answered about the namespaces the restore maps onto (in mapping order, up
/// to the first that exists).
#[derive(Debug, Clone, PartialEq)]
pub enum MappedNamespaces {
    /// None of them exists.
    Free,
    /// Namespace `to`, the mapping of `from`, exists.
    Exists {
        /// The namespace of the backup.
        from: String,
        /// What it is mapped to.
        to: String,
    },
    /// The cluster cannot be used: its own problem.
    Unusable(Blocked),
    /// Asking it failed with an error that retrying does not fix.
    Unreachable(String),
}

/// Whether target `cluster` can take the restore, as [`refuses_existing_namespaces`] says.
pub fn mapped_namespaces_free(cluster: &str, answer: MappedNamespaces) -> Result<(), Blocked> {
    match answer {
        MappedNamespaces::Free => Ok(()),
        MappedNamespaces::Exists { from, to } => Err(Blocked::new(
            "TargetNamespaceExists",
            format!(
                "namespace {to:?} (the mapping of {from:?}) already exists in cluster \
                 {cluster}; with existingResourcePolicy none its objects would be left as they \
                 are: map to a new namespace, delete it first, or set existingResourcePolicy: \
                 update"
            ),
        )),
        MappedNamespaces::Unusable(why) => Err(why),
        MappedNamespaces::Unreachable(error) => Err(Blocked::new("ClusterUnreachable", error)),
    }
}

/// Where the resource-modifier document of a restore is.
#[derive(Debug, Clone, PartialEq)]
pub enum ModifiersDocument<'a> {
    /// In the spec: these rules.
    Inline(&'a str),
    /// In the ConfigMap of this name, of the restore's namespace.
    ConfigMap(&'a str),
}

impl Display for ModifiersDocument<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModifiersDocument::Inline(_) => f.write_str("inline rules"),
            ModifiersDocument::ConfigMap(name) => write!(f, "ConfigMap {name}"),
        }
    }
}

/// The spec's `resourceModifiers`: `None` when it has none; exactly one of its two sources.
pub fn modifiers_document(
    source: Option<&ResourceModifiersSource>,
) -> Result<Option<ModifiersDocument<'_>>, Blocked> {
    let Some(source) = source else {
        return Ok(None);
    };
    match (&source.config_map_ref, &source.rules) {
        (None, Some(rules)) => Ok(Some(ModifiersDocument::Inline(rules))),
        (Some(reference), None) => Ok(Some(ModifiersDocument::ConfigMap(&reference.name))),
        _ => Err(invalid_modifiers(
            "spec",
            "set exactly one of configMapRef and rules",
        )),
    }
}

/// What the API answered for the ConfigMap of a [`ModifiersDocument::ConfigMap`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigMapRead {
    /// Its data.
    Found(BTreeMap<String, String>),
    /// No such ConfigMap.
    NotFound,
    /// An error that retrying does not fix.
    Failed(String),
}

/// The document in ConfigMap `name` of `namespace`, from what `read` found: its one key.
pub fn config_map_document(
    name: &str,
    namespace: &str,
    read: ConfigMapRead,
) -> Result<String, Blocked> {
    let what = ModifiersDocument::ConfigMap(name);
    let data = match read {
        ConfigMapRead::Found(data) => data,
        ConfigMapRead::NotFound => {
            return Err(Blocked::new(
                "ResourceModifiersNotFound",
                format!(
                    "spec.resourceModifiers.configMapRef: no ConfigMap {name:?} in namespace \
                     {namespace}"
                ),
            ));
        }
        ConfigMapRead::Failed(error) => return Err(invalid_modifiers(what, error)),
    };
    let count = data.len();
    match (data.into_values().next(), count) {
        (Some(text), 1) => Ok(text),
        _ => Err(invalid_modifiers(
            what,
            format!("it must hold exactly one key (the YAML document), it holds {count}"),
        )),
    }
}

/// `text`, the document of `what`, parsed and checked.
pub fn checked_modifiers(
    what: &ModifiersDocument<'_>,
    text: &str,
) -> Result<ResourceModifiers, Blocked> {
    let document: ResourceModifiers = serde_yaml_ng::from_str(text)
        .map_err(|e| invalid_modifiers(what, format!("not a resource-modifier document: {e}")))?;
    document
        .compile()
        .map_err(|e| invalid_modifiers(what, e.to_string()))?;
    Ok(document)
}

/// The resource modifiers of `what` are not usable: `error` says why.
fn invalid_modifiers(what: impl Display, error: impl Display) -> Blocked {
    Blocked::new(
        "InvalidResourceModifiers",
        format!("spec.resourceModifiers ({what}): {error}"),
    )
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
