//! The JSON API's handlers: each authenticates, checks the action with the project's RBAC,
//! then reads or writes through the management cluster's API or storage with the controller's
//! own credentials, logging the caller's name for every write.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::{BackupKind, LabelSelector};
use backup_storage::{BackupName, StorageError};
use backup_velero::direct::stored;
use backup_velero::format::BackupFiles;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, Patch};
use kube::{Api, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::WebState;
use super::acting::{ActingError, AsCaller};
use super::auth::{Action, Caller, allowed, authenticate, authorize};
use super::cache::{Listing, Objects};
use super::error::{ApiError, ApiResult};
use crate::reconcile::schedule::next_after;
use backup_api::status::find;
use backup_api::{ClusterBackup, ClusterRestore, RUN_NOW_ANNOTATION};
use backup_kube::locations::ResolvedLocation;

/// Firings of a schedule shown ahead.
const NEXT_RUNS: usize = 3;

fn kube_error(what: &str, e: kube::Error) -> ApiError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => ApiError::not_found(format!("{what}: not found")),
        kube::Error::Api(s) if s.code == 403 => {
            ApiError::forbidden(format!("{what}: {}", s.message))
        }
        kube::Error::Api(s) if s.code == 409 || s.code == 422 || s.code == 400 => {
            ApiError::bad_request(format!("{what}: {}", s.message))
        }
        _ => ApiError::upstream(format!("{what}: {e}")),
    }
}

fn acting_error(what: &str, e: ActingError) -> ApiError {
    match e {
        ActingError::Kube(e) => kube_error(what, e),
        ActingError::Unsendable { .. } => ApiError::bad_request(format!("{what}: {e}")),
        ActingError::Request(_) => ApiError::upstream(format!("{what}: {e}")),
    }
}

fn storage_error(what: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::BackupNotFound { .. } => ApiError::not_found(format!("{what}: {e}")),
        StorageError::ReadOnly { .. } | StorageError::DeletionRefused { .. } => {
            ApiError::conflict(format!("{what}: {e}"))
        }
        e => ApiError::upstream(format!("{what}: {e}")),
    }
}

fn condition_json(conditions: &[backup_api::Condition], type_: &str) -> Value {
    match find(conditions, type_) {
        Some(c) => json!({"status": c.status, "reason": c.reason, "message": c.message}),
        None => Value::Null,
    }
}

/// `GET /api/v1/namespaces`: the projects the caller may see.
pub async fn namespaces(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = authenticate(&state, &headers).await?;
    Ok(Json(
        json!({"items": visible_namespaces(&state, &caller).await?}),
    ))
}

/// SubjectAccessReviews in flight at once while finding a caller's projects.
const PROJECT_CHECKS_AT_ONCE: usize = 16;

/// The namespaces (projects) in which `caller` may list ClusterBackups: one access check per
/// namespace, [`PROJECT_CHECKS_AT_ONCE`] at a time, each answer cached like any other.
pub(super) async fn visible_namespaces(
    state: &WebState,
    caller: &Caller,
) -> ApiResult<Vec<String>> {
    let all = Api::<Namespace>::all(state.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| kube_error("listing namespaces", e))?;
    let answers: Vec<ApiResult<Option<String>>> = futures::stream::iter(all.items)
        .map(|ns| async move {
            let name = ns.name_any();
            let see = Action::on("list", "clusterbackups");
            Ok(allowed(state, caller, &name, see).await?.then_some(name))
        })
        .buffered(PROJECT_CHECKS_AT_ONCE)
        .collect()
        .await;
    let mut visible = Vec::new();
    for answer in answers {
        visible.extend(answer?);
    }
    Ok(visible)
}

/// `{"items": [...]}` of what `data` lists, for a caller who may list `resource` in `ns`.
/// `data` is a future, so nothing is read before the caller is authorized.
async fn items(
    state: &WebState,
    headers: &HeaderMap,
    ns: &str,
    resource: &str,
    data: impl Future<Output = ApiResult<Vec<Value>>>,
) -> ApiResult<Json<Value>> {
    authorize(state, headers, ns, Action::on("list", resource), None).await?;
    Ok(Json(json!({"items": data.await?})))
}

/// `GET /api/v1/namespaces/{ns}/storagelocations`.
pub async fn storage_locations(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    items(
        &state,
        &headers,
        &ns,
        "storagelocations",
        locations_data(&state, &ns),
    )
    .await
}

/// The StorageLocations of `ns`, as the API shows them.
pub(super) async fn locations_data(state: &WebState, ns: &str) -> ApiResult<Vec<Value>> {
    let listed = Objects::in_namespace(&state.objects().await?.locations, ns);
    let items: Vec<Value> = listed
        .iter()
        .map(|l| {
            let status = l.status.clone().unwrap_or_default();
            json!({
                "name": l.name_any(),
                "provider": l.spec.provider,
                "bucket": l.spec.object_storage.bucket,
                "prefix": l.spec.object_storage.prefix,
                "default": l.spec.default,
                "accessMode": l.spec.access_mode,
                "phase": status.phase,
                "reason": status.reason,
                "message": status.message,
                "lastValidationTime": status.last_validation_time,
            })
        })
        .collect();
    Ok(items)
}

/// `GET /api/v1/namespaces/{ns}/clusters`.
pub async fn clusters(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    items(
        &state,
        &headers,
        &ns,
        "managedclusters",
        clusters_data(&state, &ns),
    )
    .await
}

/// The ManagedClusters of `ns`, as the API shows them.
pub(super) async fn clusters_data(state: &WebState, ns: &str) -> ApiResult<Vec<Value>> {
    let listed = Objects::in_namespace(&state.objects().await?.clusters, ns);
    let items: Vec<Value> = listed
        .iter()
        .map(|c| {
            let status = c.status.clone().unwrap_or_default();
            json!({
                "name": c.name_any(),
                "labels": c.labels(),
                "engine": status.engine,
                "kubernetesVersion": status.kubernetes_version,
                "reachable": condition_json(&status.conditions, "Reachable"),
            })
        })
        .collect();
    Ok(items)
}

/// `GET /api/v1/namespaces/{ns}/restoredrills`, with each drill's interval.
pub async fn restore_drills(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    items(
        &state,
        &headers,
        &ns,
        "restoredrills",
        drills_data(&state, &ns),
    )
    .await
}

/// The RestoreDrills of `ns`, as the API shows them: what they drill, how often (seconds
/// between the next two firings, 0 for a one-time drill), and each cluster's last drill and
/// last proof.
pub(super) async fn drills_data(state: &WebState, ns: &str) -> ApiResult<Vec<Value>> {
    let listed = Objects::in_namespace(&state.objects().await?.drills, ns);
    let now = jiff::Timestamp::now();
    Ok(listed
        .iter()
        .map(|d| {
            let status = d.status.clone().unwrap_or_default();
            let valid = d.spec.validate();
            // Drills fire in UTC.
            let schedule = valid
                .as_ref()
                .ok()
                .and_then(|v| v.schedule.clone())
                .map(|s| (s, jiff::tz::TimeZone::UTC));
            let interval = interval_seconds(&next_firings(schedule.as_ref(), now));
            let selects: Option<Vec<String>> = valid.as_ref().ok().map(|v| {
                Objects::in_namespace(&state.objects.clusters, ns)
                    .iter()
                    .filter(|c| v.selection.selects(&c.name_any(), c.labels()))
                    .map(|c| c.name_any())
                    .collect()
            });
            json!({
                "name": d.name_any(),
                "clusterBackup": d.spec.cluster_backup,
                "schedule": d.spec.schedule,
                "intervalSeconds": interval,
                "selectedClusters": selects,
                "specError": valid.err().map(|e| e.to_string()),
                "clusters": status.clusters,
                "ready": condition_json(&status.conditions, "Ready"),
                "proven": condition_json(&status.conditions, "Proven"),
            })
        })
        .collect())
}

/// `GET /api/v1/namespaces/{ns}/clusterbackups`, with each schedule's next firings.
pub async fn cluster_backups(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    items(
        &state,
        &headers,
        &ns,
        "clusterbackups",
        cluster_backups_data(&state, &ns),
    )
    .await
}

/// The ClusterBackups of `ns` with each schedule's next firings and interval.
pub(super) async fn cluster_backups_data(state: &WebState, ns: &str) -> ApiResult<Vec<Value>> {
    let listed = Objects::in_namespace(&state.objects().await?.backups, ns);
    let now = jiff::Timestamp::now();
    let items: Vec<Value> = listed
        .iter()
        .map(|b| {
            let status = b.status.clone().unwrap_or_default();
            // An invalid spec shows why instead of an empty list of firings.
            let (next_runs, schedule_error) = match b.spec.validate() {
                Ok(valid) => (next_firings(valid.schedule.as_ref(), now), None),
                Err(invalid) => (Vec::new(), Some(invalid.to_string())),
            };
            let interval = interval_seconds(&next_runs);
            json!({
                "name": b.name_any(),
                "schedule": b.spec.schedule,
                "paused": b.spec.paused,
                "phase": status.phase,
                "lastScheduleTime": status.last_schedule_time,
                "nextRuns": next_runs,
                "scheduleError": schedule_error,
                "intervalSeconds": interval,
                "clusters": status.clusters,
                "ready": condition_json(&status.conditions, "Ready"),
            })
        })
        .collect();
    Ok(items)
}

/// The next [`NEXT_RUNS`] firings of `schedule` after `now` (none for a one-time backup).
/// Seconds between the first two of `next_runs` (0 when there are fewer: it fires at most
/// once).
fn interval_seconds(next_runs: &[jiff::Timestamp]) -> i64 {
    match next_runs {
        [first, second, ..] => second.duration_since(*first).as_secs(),
        _ => 0,
    }
}

fn next_firings(
    schedule: Option<&(backup_core::Schedule, jiff::tz::TimeZone)>,
    now: jiff::Timestamp,
) -> Vec<jiff::Timestamp> {
    let mut next_runs = Vec::new();
    let mut at = now;
    while next_runs.len() < NEXT_RUNS {
        match next_after(schedule, at) {
            Some(next) => {
                next_runs.push(next);
                at = next;
            }
            None => break,
        }
    }
    next_runs
}

/// Which location to read a cluster's backups from: `?location=`, else the namespace's default.
#[derive(Debug, Deserialize)]
pub struct LocationQuery {
    /// The StorageLocation's name.
    pub location: Option<String>,
}

/// The location a request reads (`name`, else the namespace's default), opened from the
/// watched objects and kept for [`LOCATION_TTL`](super::cache::LOCATION_TTL).
pub(super) async fn location(
    state: &WebState,
    ns: &str,
    name: Option<&str>,
) -> ApiResult<ResolvedLocation> {
    let key = (ns.to_string(), name.map(str::to_string));
    if let Some((_, opened)) = state.cache.locations.get(&key) {
        return Ok(opened);
    }
    let objects = state.objects().await?;
    let picked = backup_kube::locations::pick(&objects.locations, ns, name)
        .map_err(|e| ApiError::not_found(format!("storage location: {e}")))?;
    let opened = state
        .locations
        .open(&picked)
        .await
        .map_err(|e| ApiError::not_found(format!("storage location: {e}")))?;
    state.cache.locations.insert(key, opened.clone());
    Ok(opened)
}

/// The cluster's repository in the location, and the location's name.
pub(super) async fn repository(
    state: &WebState,
    ns: &str,
    cluster: &str,
    query: &LocationQuery,
) -> ApiResult<(String, backup_storage::Repository)> {
    let location = location(state, ns, query.location.as_deref()).await?;
    let repo = location
        .repo
        .scoped_str(ns, cluster)
        .map_err(|e| ApiError::bad_request(format!("cluster {cluster:?}: {e}")))?;
    Ok((location.name, repo))
}

/// The backups of one cluster as storage holds them (the source of truth), through the
/// dashboard's listing cache (see [`super::cache`]).
pub(super) async fn cluster_listing(
    state: &WebState,
    ns: &str,
    cluster: &str,
    query: &LocationQuery,
) -> ApiResult<Arc<Listing>> {
    let (location, repo) = repository(state, ns, cluster, query).await?;
    let fingerprint = state.objects().await?.runs_fingerprint(ns, cluster);
    state
        .cache
        .listing(
            (ns.to_string(), location, cluster.to_string()),
            fingerprint,
            move || {
                let repo = repo.clone();
                async move { stored::list_with_manifests(&repo).await }
            },
        )
        .await
        .map_err(|e| ApiError::upstream(format!("listing backups in storage: {e}")))
}

/// A listing as the API shows it.
pub(super) fn stored_backups(listing: &Listing) -> Vec<Value> {
    listing
        .backups
        .iter()
        .map(|(b, manifest)| {
            json!({
                "name": b.name,
                "phase": b.phase,
                "itemsBackedUp": b.items_backed_up,
                "totalItems": b.total_items,
                "errors": b.errors,
                "warnings": b.warnings,
                "started": b.started,
                "completed": b.completed,
                "expiration": b.expiration,
                "schedule": b.labels.get(backup_velero::direct::SCHEDULE_LABEL),
                "sizeBytes": manifest.size_bytes,
                "encrypted": manifest.encrypted,
                // Every artifact's SHA-256 is in the manifest; downloads and restores verify it.
                "checksum": "recorded",
            })
        })
        .collect()
}

/// `GET /api/v1/namespaces/{ns}/clusters/{cluster}/backups`.
pub async fn backups(
    State(state): State<WebState>,
    Path((ns, cluster)): Path<(String, String)>,
    Query(query): Query<LocationQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(
        &state,
        &headers,
        &ns,
        Action::on("list", "clusterbackups"),
        None,
    )
    .await?;
    let listing = cluster_listing(&state, &ns, &cluster, &query).await?;
    Ok(Json(json!({"items": stored_backups(&listing)})))
}

/// `GET /api/v1/namespaces/{ns}/clusters/{cluster}/backups/{name}`.
pub async fn backup(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    Query(query): Query<LocationQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(
        &state,
        &headers,
        &ns,
        Action::on("get", "clusterbackups"),
        None,
    )
    .await?;
    let listing = cluster_listing(&state, &ns, &cluster, &query).await?;
    stored_backups(&listing)
        .into_iter()
        .find(|b| b["name"] == name.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no backup {name:?} of cluster {cluster}")))
}

/// `GET .../backups/{name}/download`: the tarball, streamed through the controller and checked
/// against its recorded SHA-256 while streaming; a mismatch ends the download with an error.
pub async fn download(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    Query(query): Query<LocationQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = authorize(
        &state,
        &headers,
        &ns,
        Action::on("get", "clusterbackups"),
        Some(Action::on("get", "clusterbackups").subresource("download")),
    )
    .await?;
    tracing::info!(user = %caller.user, namespace = %ns, cluster = %cluster, backup = %name, "download");
    tarball(&state, &ns, &cluster, &name, &query).await
}

/// The backup's tarball as a download, verified against its SHA-256 while it streams.
pub(super) async fn tarball(
    state: &WebState,
    ns: &str,
    cluster: &str,
    name: &str,
    query: &LocationQuery,
) -> ApiResult<Response> {
    let (_, repo) = repository(state, ns, cluster, query).await?;
    let backup = BackupName::new(name)
        .map_err(|e| ApiError::bad_request(format!("backup name {name:?}: {e}")))?;
    let files = BackupFiles::new(&backup).map_err(|e| storage_error("backup files", e))?;
    let stream = repo
        .open_artifact(BackupKind::Resources, &backup, &files.tarball)
        .await
        .map_err(|e| storage_error(&format!("backup {name}"), e))?;
    // The stored size is announced, so a download cut short is visible as short; and each
    // chunk is held back until the next one (or the verified end) arrives, so a checksum
    // mismatch, found at the end, keeps the last chunk from ever being sent.
    let length = (!stream.is_decrypted()).then(|| stream.record().size);
    let body = Body::from_stream(hold_back_last(stream).map(|c| c.map_err(std::io::Error::other)));
    let mut headers = vec![
        (header::CONTENT_TYPE, "application/gzip".to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.tar.gz\""),
        ),
    ];
    if let Some(length) = length {
        headers.push((header::CONTENT_LENGTH, length.to_string()));
    }
    let mut response = body.into_response();
    for (key, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(key, value);
        }
    }
    Ok(response)
}

/// Yields each chunk of `stream` only once the next one (or its successful end) has arrived:
/// an error at the end (a checksum mismatch) is passed on instead of the last chunk.
fn hold_back_last<S, E>(stream: S) -> impl futures::Stream<Item = Result<axum::body::Bytes, E>>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Send + Unpin,
{
    futures::stream::unfold(
        (stream, None::<axum::body::Bytes>, false),
        |(mut stream, held, done)| async move {
            if done {
                return None;
            }
            let mut held = held;
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => match held.replace(chunk) {
                        Some(previous) => return Some((Ok(previous), (stream, held, false))),
                        None => continue,
                    },
                    Some(Err(e)) => return Some((Err(e), (stream, None, true))),
                    None => return held.map(|last| (Ok(last), (stream, None, true))),
                }
            }
        },
    )
}

/// `DELETE .../backups/{name}`: deletes the backup from storage.
pub async fn delete_backup(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    Query(query): Query<LocationQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let see = Action::on("get", "clusterbackups");
    let caller = authorize(&state, &headers, &ns, see, None).await?;
    tracing::info!(user = %caller.user, namespace = %ns, cluster = %cluster, backup = %name, "delete");
    delete_stored(&state, &caller, &ns, &cluster, &name, &query).await?;
    Ok(Json(json!({"deleted": name})))
}

/// Deletes a backup from storage (404 when it is not there), when `caller` may delete the
/// ClusterBackup it is a run of (its schedule label), or any ClusterBackup of the project for
/// a backup of none (made with `backupctl`).
pub(super) async fn delete_stored(
    state: &WebState,
    caller: &Caller,
    ns: &str,
    cluster: &str,
    name: &str,
    query: &LocationQuery,
) -> ApiResult<()> {
    let (_, repo) = repository(state, ns, cluster, query).await?;
    let backup = BackupName::new(name)
        .map_err(|e| ApiError::bad_request(format!("backup name {name:?}: {e}")))?;
    let manifest = repo
        .get_manifest(BackupKind::Resources, &backup)
        .await
        .map_err(|e| storage_error(&format!("backup {name}"), e))?;
    let record = stored::record(&repo, &manifest)
        .await
        .map_err(|e| ApiError::upstream(format!("backup {name}: {e}")))?;
    let schedule = record.labels.get(backup_velero::direct::SCHEDULE_LABEL);
    let delete = Action::on("delete", "clusterbackups");
    let delete = match schedule {
        Some(schedule) => delete.named(schedule),
        None => delete,
    };
    if !allowed(state, caller, ns, delete).await? {
        let of = schedule.map_or(
            "no ClusterBackup (made outside the controller)".into(),
            |s| format!("ClusterBackup {s}"),
        );
        return Err(ApiError::forbidden(format!(
            "{} may not delete backup {name}: it is a run of {of}, and deleting it needs \
             `delete` on {} in namespace {ns}",
            caller.user,
            schedule.map_or("clusterbackups".into(), |s| format!("clusterbackups {s:?}")),
        )));
    }
    let deleted = repo
        .delete(BackupKind::Resources, &backup)
        .await
        .map_err(|e| storage_error(&format!("deleting backup {name}"), e));
    // Whatever storage answered, this replica's listing of the cluster may be out of date.
    state.cache.forget_listings(ns, cluster);
    deleted
}

/// Which stored backups a batch delete takes (KKP's "delete by filter"); at least one filter,
/// or `all=true`, so an empty query never deletes everything by accident.
#[derive(Debug, Deserialize)]
pub struct BatchDelete {
    /// The StorageLocation's name (default: the namespace's default location).
    pub location: Option<String>,
    /// Runs of this ClusterBackup (its schedule label).
    pub schedule: Option<String>,
    /// Only backups in this phase (`Failed`, `PartiallyFailed`, ...).
    pub phase: Option<String>,
    /// Only backups started before this time (RFC 3339).
    pub before: Option<String>,
    /// Every backup of the cluster.
    #[serde(default)]
    pub all: bool,
}

/// `DELETE /api/v1/namespaces/{ns}/clusters/{cluster}/backups?schedule=&phase=&before=`: deletes
/// the matching backups from storage; the ones storage refuses are listed with why.
pub async fn delete_backups(
    State(state): State<WebState>,
    Path((ns, cluster)): Path<(String, String)>,
    Query(filter): Query<BatchDelete>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    // Runs of one schedule need `delete` on that ClusterBackup; any other filter on them all.
    // Each backup is checked again against its own schedule as it is deleted.
    let delete = Action::on("delete", "clusterbackups");
    let delete = match &filter.schedule {
        Some(schedule) => delete.named(schedule),
        None => delete,
    };
    let see = Action::on("list", "clusterbackups");
    let caller = authorize(&state, &headers, &ns, see, Some(delete)).await?;
    if !filter.all && filter.schedule.is_none() && filter.phase.is_none() && filter.before.is_none()
    {
        return Err(ApiError::bad_request(
            "name what to delete: schedule=, phase= and/or before= (RFC 3339), or all=true",
        ));
    }
    let before = match &filter.before {
        None => None,
        Some(text) => Some(text.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::bad_request(format!("before={text:?} is not an RFC 3339 time: {e}"))
        })?),
    };
    let query = LocationQuery {
        location: filter.location.clone(),
    };
    let (_, repo) = repository(&state, &ns, &cluster, &query).await?;
    let stored = stored::list(&repo, &LabelSelector::default())
        .await
        .map_err(|e| ApiError::upstream(format!("listing backups in storage: {e}")))?;
    let chosen: Vec<String> = stored
        .iter()
        .filter(|b| {
            filter
                .schedule
                .as_ref()
                .is_none_or(|s| b.labels.get(backup_velero::direct::SCHEDULE_LABEL) == Some(s))
                && filter
                    .phase
                    .as_ref()
                    .is_none_or(|p| b.phase.to_string().eq_ignore_ascii_case(p))
                && before.is_none_or(|t| b.taken_at().is_some_and(|at| at < t))
        })
        .map(|b| b.name.clone())
        .collect();
    tracing::info!(user = %caller.user, namespace = %ns, cluster = %cluster, count = chosen.len(), "batch delete");
    let mut deleted = Vec::new();
    let mut refused = Vec::new();
    for name in chosen {
        match delete_stored(&state, &caller, &ns, &cluster, &name, &query).await {
            Ok(()) => deleted.push(name),
            Err(e) => refused.push(json!({"name": name, "message": e.message})),
        }
    }
    Ok(Json(json!({"deleted": deleted, "refused": refused})))
}

/// `POST /api/v1/namespaces/{ns}/clusterbackups/{name}/run`: the run-now annotation.
pub async fn run_now(
    State(state): State<WebState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = authorize(
        &state,
        &headers,
        &ns,
        Action::on("get", "clusterbackups").named(&name),
        Some(Action::on("patch", "clusterbackups").named(&name)),
    )
    .await?;
    let token = request_run_now(&state, &caller, &ns, &name).await?;
    Ok(Json(json!({"clusterBackup": name, "runNowToken": token})))
}

/// Sets a new run-now token on ClusterBackup `name`; returns it.
pub(super) async fn request_run_now(
    state: &WebState,
    caller: &Caller,
    ns: &str,
    name: &str,
) -> ApiResult<String> {
    let token = format!("dashboard-{}", jiff::Timestamp::now().as_millisecond());
    tracing::info!(user = %caller.user, namespace = %ns, backup = %name, token = %token, "run now");
    let patch = Patch::Merge(json!({"metadata": {"annotations": {RUN_NOW_ANNOTATION: token}}}));
    AsCaller::new(&state.client, caller)
        .patch::<ClusterBackup, _>(ns, name, &patch)
        .await
        .map_err(|e| acting_error(&format!("ClusterBackup {name}"), e))?;
    Ok(token)
}

/// `POST /api/v1/namespaces/{ns}/clusterrestores`: creates a ClusterRestore (as the caller);
/// with `spec.dryRun: true` the controller fills in the plan instead of restoring.
pub async fn create_restore(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = authorize(
        &state,
        &headers,
        &ns,
        Action::on("list", "clusterbackups"),
        Some(Action::on("create", "clusterrestores")),
    )
    .await?;
    let created = create_restore_object(&state, &caller, &ns, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(created).unwrap_or(Value::Null)),
    ))
}

/// Creates the ClusterRestore `body` describes in `ns`, as the caller: its `spec`, and of its
/// `metadata` only the name, generateName and labels (nothing that would steer the
/// controller: owners, finalizers, annotations). What the admission webhook asks of anyone
/// creating it (`restore`, maybe `restore-privileged`, on each target) is checked here first,
/// to answer with the page's own words; the webhook then judges the caller again.
pub(super) async fn create_restore_object(
    state: &WebState,
    caller: &Caller,
    ns: &str,
    body: &Value,
) -> ApiResult<ClusterRestore> {
    let metadata = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut restore: ClusterRestore = serde_json::from_value(json!({
        "apiVersion": "backupfleet.dev/v1alpha1",
        "kind": "ClusterRestore",
        "metadata": {
            "name": metadata.get("name"),
            "generateName": metadata.get("generateName"),
            "labels": metadata.get("labels"),
        },
        "spec": body.get("spec").cloned().unwrap_or(Value::Null),
    }))
    .map_err(|e| ApiError::bad_request(format!("not a ClusterRestore: {e}")))?;
    restore.metadata.namespace = Some(ns.to_string());
    require_cluster_verbs(state, caller, ns, &restore).await?;
    tracing::info!(user = %caller.user, namespace = %ns, restore = ?restore.metadata.name, "restore");
    AsCaller::new(&state.client, caller)
        .create(&restore)
        .await
        .map_err(|e| acting_error("creating the ClusterRestore", e))
}

/// Refuses (403, worded as the webhook words it) unless `caller` holds every verb on the
/// project's ManagedClusters that creating `restore` needs.
async fn require_cluster_verbs(
    state: &WebState,
    caller: &Caller,
    ns: &str,
    restore: &ClusterRestore,
) -> ApiResult<()> {
    let spec = serde_json::to_value(&restore.spec)
        .map_err(|e| ApiError::bad_request(format!("the restore cannot be written: {e}")))?;
    let needed = crate::admission::needed::needed("ClusterRestore", &spec)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for need in &needed {
        if !allowed(state, caller, ns, need.action()).await? {
            return Err(ApiError::forbidden(need.refusal(&caller.user, ns)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_chunk_is_held_back_until_the_end_is_known_good() {
        let chunk = |s: &'static str| Ok::<_, String>(axum::body::Bytes::from_static(s.as_bytes()));
        let good = hold_back_last(futures::stream::iter([chunk("a"), chunk("b"), chunk("c")]));
        let got: Vec<_> = good.collect().await;
        assert_eq!(got, [chunk("a"), chunk("b"), chunk("c")]);
        // A mismatch found at the end: the last chunk is never sent, the error is.
        let bad = hold_back_last(futures::stream::iter([
            chunk("a"),
            chunk("b"),
            Err("checksum mismatch".to_string()),
        ]));
        let got: Vec<_> = bad.collect().await;
        assert_eq!(got, [chunk("a"), Err("checksum mismatch".to_string())]);
    }
}
