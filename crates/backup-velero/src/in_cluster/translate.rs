//! Pure translation of core specs into Velero objects: no I/O, so every rule is unit-testable
//! and the objects the engine writes can be compared whole.

use std::collections::BTreeMap;

use backup_core::{
    BackupKind, ExistingResourcePolicy, LabelSelector as CoreSelector, ResourceFilter,
    StorageLocationSpec, location::validate_prefix, naming::DNS1123_LABEL_MAX, sanitize,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::InClusterConfig;
use super::error::VeleroError;
use crate::api::{
    Backup, BackupSpec, BackupStorageLocation, BackupStorageLocationAccessMode,
    BackupStorageLocationSpec, LabelSelector, ObjectLabels, ObjectStorageLocation, Restore,
    RestoreSpec, RestoreStatusSpec, Schedule, ScheduleSpec, SecretKeySelector,
};

/// Label every object we create carries, so our objects can be listed and told from others.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "backup-fleet";
/// The project the cluster belongs to.
pub const PROJECT_LABEL: &str = "backup-fleet.io/project";
/// The cluster the object belongs to.
pub const CLUSTER_LABEL: &str = "backup-fleet.io/cluster";
/// The core (user-facing) name, as an annotation: it may be longer than a label value.
pub const NAME_ANNOTATION: &str = "backup-fleet.io/name";
/// Velero's label linking a backup to the schedule that created it.
pub const VELERO_SCHEDULE_LABEL: &str = "velero.io/schedule-name";
/// Velero's label naming the backup a DeleteBackupRequest is for.
pub const VELERO_BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Velero's label with the UID of the backup a DeleteBackupRequest is for.
pub const VELERO_BACKUP_UID_LABEL: &str = "velero.io/backup-uid";
/// Key in our credential Secret when the location names none (Velero's convention).
pub const DEFAULT_CREDENTIAL_KEY: &str = "cloud";

/// The Velero object name for core object `name` of `kind` in `cluster`:
/// `<cluster>-<kind>-<name>`, made DNS-1123-label safe (Velero uses backup names as label
/// values, so 63 characters). Longer names keep a readable head and end in 8 hex characters of
/// a hash of the full input, so distinct inputs stay distinct and the result is deterministic.
pub fn object_name(cluster: &str, kind: &str, name: &str) -> String {
    let full = format!("{cluster}-{kind}-{name}");
    let clean = sanitize(&full);
    if clean.len() <= DNS1123_LABEL_MAX && clean == full {
        return clean;
    }
    let hash = format!("{:08x}", fnv1a(full.as_bytes()) as u32);
    let room = DNS1123_LABEL_MAX - hash.len() - 1;
    let head: String = clean.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        return format!("x-{hash}");
    }
    format!("{head}-{hash}")
}

/// FNV-1a: a tiny stable hash (the name must never change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The storage prefix of a cluster: `[<location prefix>/]<project>/<cluster>`.
///
/// This is the isolation boundary between clusters sharing a bucket (as in KKP), so the
/// location prefix is refused if it could climb out (`..`, absolute, ...) and project/cluster
/// are DNS labels (checked in [`InClusterConfig::new`]), so no cluster's prefix is inside
/// another's.
pub fn cluster_prefix(cfg: &InClusterConfig, base: Option<&str>) -> Result<String, VeleroError> {
    let own = format!("{}/{}", cfg.project, cfg.cluster);
    match base.map(|b| b.trim_end_matches('/')) {
        None | Some("") => Ok(own),
        Some(b) => {
            validate_prefix(b).map_err(|e| VeleroError::Invalid(e.to_string()))?;
            Ok(format!("{b}/{own}"))
        }
    }
}

/// The prefix a cluster's Velero BackupStorageLocation points at: the cluster's prefix plus
/// [`backup_core::VELERO_DIR`], the folder that holds only Velero's own folders (`backups/`,
/// `restores/`), so Velero's check of the prefix's top-level folders passes even though the
/// cluster's scope also holds our `etcd-snapshots/`.
pub fn velero_prefix(cfg: &InClusterConfig, base: Option<&str>) -> Result<String, VeleroError> {
    Ok(format!(
        "{}/{}",
        cluster_prefix(cfg, base)?,
        backup_core::VELERO_DIR
    ))
}

fn labels(cfg: &InClusterConfig) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (PROJECT_LABEL.to_string(), cfg.project.clone()),
        (CLUSTER_LABEL.to_string(), cfg.cluster.clone()),
    ])
}

fn meta(cfg: &InClusterConfig, name: String, core_name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cfg.velero_namespace.clone()),
        labels: Some(labels(cfg)),
        annotations: Some(BTreeMap::from([(
            NAME_ANNOTATION.to_string(),
            core_name.to_string(),
        )])),
        ..Default::default()
    }
}

/// The BSL name of core location `name` in this cluster.
pub fn location_name(cfg: &InClusterConfig, name: &str) -> String {
    object_name(&cfg.cluster, "location", name)
}

/// The BSL and its credential Secret for core location `name`.
///
/// `credentials` are the provider credential file contents; when given, they are stored in a
/// Secret named like the BSL in the Velero namespace, under the location's key (default
/// `cloud`), and the BSL points at it. Without contents, the location's own credential
/// reference (if any) is used as-is.
pub fn storage_location(
    cfg: &InClusterConfig,
    name: &str,
    spec: &StorageLocationSpec,
    credentials: Option<&[u8]>,
    make_default: bool,
) -> Result<(BackupStorageLocation, Option<Secret>), VeleroError> {
    spec.validate()
        .map_err(|e| VeleroError::Invalid(e.to_string()))?;
    let bsl_name = location_name(cfg, name);
    let prefix = velero_prefix(cfg, spec.prefix.as_deref())?;
    let key = spec
        .credential
        .as_ref()
        .map_or(DEFAULT_CREDENTIAL_KEY, |c| c.key.as_str())
        .to_string();
    let secret = credentials.map(|data| Secret {
        metadata: meta(cfg, bsl_name.clone(), name),
        data: Some(BTreeMap::from([(key.clone(), ByteString(data.to_vec()))])),
        type_: Some("Opaque".into()),
        ..Default::default()
    });
    let bsl_spec = BackupStorageLocationSpec {
        provider: spec.provider.clone(),
        object_storage: ObjectStorageLocation {
            bucket: spec.bucket.clone(),
            prefix: Some(prefix),
            ca_cert: spec.ca_cert.clone().map(ByteString),
            extra: Default::default(),
        },
        config: (!spec.config.is_empty()).then(|| spec.config.clone()),
        credential: match (&secret, &spec.credential) {
            (Some(_), _) => Some(SecretKeySelector {
                name: bsl_name.clone(),
                key,
                optional: None,
            }),
            // No contents given: the referenced Secret is expected in the Velero namespace.
            (None, Some(c)) => Some(SecretKeySelector {
                name: c.name.clone(),
                key: c.key.clone(),
                optional: None,
            }),
            (None, None) => None,
        },
        default: Some(make_default),
        access_mode: Some(if spec.access_mode.is_writable() {
            BackupStorageLocationAccessMode::ReadWrite
        } else {
            BackupStorageLocationAccessMode::ReadOnly
        }),
        backup_sync_period: None,
        validation_frequency: spec.validation_frequency.map(|d| d.to_string()),
        extra: Default::default(),
    };
    let mut bsl = BackupStorageLocation::new(&bsl_name, bsl_spec);
    bsl.metadata = meta(cfg, bsl_name, name);
    Ok((bsl, secret))
}

fn list(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn selector(s: &CoreSelector) -> Result<LabelSelector, VeleroError> {
    // Same JSON shape (metav1.LabelSelector) on both sides.
    serde_json::to_value(s)
        .and_then(serde_json::from_value)
        .map_err(|e| VeleroError::Invalid(format!("label selector: {e}")))
}

fn or_selectors(v: &[CoreSelector]) -> Result<Option<Vec<LabelSelector>>, VeleroError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.iter().map(selector).collect::<Result<_, _>>().map(Some)
}

/// The Velero BackupSpec for a core backup spec (shared by Backups and Schedule templates).
fn backup_spec(
    cfg: &InClusterConfig,
    spec: &backup_core::BackupSpec,
) -> Result<BackupSpec, VeleroError> {
    spec.validate()
        .map_err(|e| VeleroError::Invalid(e.to_string()))?;
    if spec.kind != BackupKind::Resources {
        return Err(VeleroError::Invalid(
            "etcd snapshots are taken by the etcd engine, not by Velero: use kind \"resources\""
                .into(),
        ));
    }
    let f: &ResourceFilter = &spec.filter;
    Ok(BackupSpec {
        included_namespaces: list(&f.included_namespaces),
        excluded_namespaces: list(&f.excluded_namespaces),
        included_resources: list(&f.included_resources),
        excluded_resources: list(&f.excluded_resources),
        included_cluster_scoped_resources: list(&f.included_cluster_scoped_resources),
        excluded_cluster_scoped_resources: list(&f.excluded_cluster_scoped_resources),
        label_selector: f.label_selector.as_ref().map(selector).transpose()?,
        or_label_selectors: or_selectors(&f.or_label_selectors)?,
        include_cluster_resources: f.include_cluster_resources,
        snapshot_volumes: Some(spec.snapshot_volumes),
        ttl: Some(spec.ttl.to_string()),
        storage_location: spec
            .storage_location
            .as_deref()
            .or(cfg.location.as_deref())
            .map(|l| location_name(cfg, l)),
        default_volumes_to_fs_backup: Some(spec.default_volumes_to_fs_backup),
        ..Default::default()
    })
}

fn with_user_labels(mut meta: ObjectMeta, user: &BTreeMap<String, String>) -> ObjectMeta {
    let ours = meta.labels.take().unwrap_or_default();
    let mut all = user.clone();
    all.extend(ours); // ours win: they are how we find our objects again
    meta.labels = Some(all);
    meta
}

/// The Velero Backup for core backup `name`.
pub fn backup(
    cfg: &InClusterConfig,
    name: &str,
    spec: &backup_core::BackupSpec,
) -> Result<Backup, VeleroError> {
    let velero_name = object_name(&cfg.cluster, "backup", name);
    let mut b = Backup::new(&velero_name, backup_spec(cfg, spec)?);
    b.metadata = with_user_labels(meta(cfg, velero_name, name), &spec.labels);
    Ok(b)
}

/// The Velero Schedule for core schedule `name`. Backups it creates carry our labels (through
/// the template's metadata) so they are found like one-time backups.
pub fn schedule(
    cfg: &InClusterConfig,
    name: &str,
    spec: &backup_core::ScheduleSpec,
) -> Result<Schedule, VeleroError> {
    spec.validate()
        .map_err(|e| VeleroError::Invalid(e.to_string()))?;
    let velero_name = object_name(&cfg.cluster, "schedule", name);
    let mut template = backup_spec(cfg, &spec.template)?;
    let mut template_labels = spec.template.labels.clone();
    template_labels.extend(labels(cfg));
    template.metadata = Some(ObjectLabels {
        labels: template_labels,
    });
    let mut s = Schedule::new(
        &velero_name,
        ScheduleSpec {
            template,
            schedule: spec.schedule.as_str().to_string(),
            use_owner_references_in_backup: None,
            paused: Some(spec.paused),
            skip_immediately: None,
            extra: Default::default(),
        },
    );
    s.metadata = with_user_labels(meta(cfg, velero_name, name), &spec.template.labels);
    Ok(s)
}

/// The Velero Restore for core restore `name`. `backupName`/`scheduleName` are core names and
/// are translated to the Velero objects this engine created for them; a schedule restores its
/// most recent `Completed` backup (Velero's `scheduleName` semantics).
pub fn restore(
    cfg: &InClusterConfig,
    name: &str,
    spec: &backup_core::RestoreSpec,
) -> Result<Restore, VeleroError> {
    spec.validate()
        .map_err(|e| VeleroError::Invalid(e.to_string()))?;
    if spec.options.dry_run {
        return Err(VeleroError::Invalid(
            "Velero has no dry-run restore: unset dryRun or use the direct engine".into(),
        ));
    }
    let f = &spec.options.filter;
    if !f.included_cluster_scoped_resources.is_empty()
        || !f.excluded_cluster_scoped_resources.is_empty()
    {
        return Err(VeleroError::Invalid(
            "Velero restores do not support included/excludedClusterScopedResources: use includeClusterResources with includedResources/excludedResources".into(),
        ));
    }
    let velero_name = object_name(&cfg.cluster, "restore", name);
    let mut r = Restore::new(
        &velero_name,
        RestoreSpec {
            backup_name: spec
                .backup_name
                .as_deref()
                .map(|b| object_name(&cfg.cluster, "backup", b)),
            schedule_name: spec
                .schedule_name
                .as_deref()
                .map(|s| object_name(&cfg.cluster, "schedule", s)),
            included_namespaces: list(&f.included_namespaces),
            excluded_namespaces: list(&f.excluded_namespaces),
            included_resources: list(&f.included_resources),
            excluded_resources: list(&f.excluded_resources),
            namespace_mapping: (!spec.options.namespace_mapping.is_empty())
                .then(|| spec.options.namespace_mapping.clone()),
            label_selector: f.label_selector.as_ref().map(selector).transpose()?,
            or_label_selectors: or_selectors(&f.or_label_selectors)?,
            restore_status: spec
                .options
                .restore_status
                .as_ref()
                .map(|s| RestoreStatusSpec {
                    included_resources: list(&s.included_resources),
                    excluded_resources: list(&s.excluded_resources),
                }),
            preserve_node_ports: spec.options.preserve_node_ports,
            include_cluster_resources: f.include_cluster_resources,
            existing_resource_policy: Some(
                match spec.options.existing_resource_policy {
                    ExistingResourcePolicy::None => "none",
                    ExistingResourcePolicy::Update => "update",
                }
                .to_string(),
            ),
            ..Default::default()
        },
    );
    r.metadata = meta(cfg, velero_name, name);
    Ok(r)
}
