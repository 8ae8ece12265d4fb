//! `GET /api/v1/namespaces/{ns}/events`: live progress as server-sent events. Each change of a
//! ClusterBackup or ClusterRestore of the project (a run starting, its items counting up, its
//! end) is one `progress` event with the object's phase and per-cluster state, so a dashboard
//! follows runs without polling. The caller must be allowed to list ClusterBackups there.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::WebState;
use super::auth::{Action, authorize};
use super::error::ApiResult;
use backup_api::{ClusterBackup, ClusterRestore};

/// The event stream.
pub async fn events(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    authorize(
        &state,
        &headers,
        &ns,
        Action::on("list", "clusterbackups"),
        None,
    )
    .await?;
    Ok(progress(&state, &ns))
}

/// Every change of the ClusterBackups and ClusterRestores of `ns` as `progress` events; the
/// caller has checked that the requester may list ClusterBackups there.
pub(super) fn progress(
    state: &WebState,
    ns: &str,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let config = watcher::Config::default();
    let backups = watcher(
        Api::<ClusterBackup>::namespaced(state.client.clone(), ns),
        config.clone(),
    )
    .applied_objects()
    .map(|object| {
        object.map(|b| {
            let status = b.status.clone().unwrap_or_default();
            json!({"kind": "ClusterBackup", "name": b.name_any(), "phase": status.phase,
                       "clusters": status.clusters})
        })
    });
    let restores = watcher(
        Api::<ClusterRestore>::namespaced(state.client.clone(), ns),
        config,
    )
    .applied_objects()
    .map(|object| {
        object.map(|r| {
            let status = r.status.clone().unwrap_or_default();
            json!({"kind": "ClusterRestore", "name": r.name_any(), "phase": status.phase,
                       "clusters": status.clusters})
        })
    });
    let stream = futures::stream::select(backups, restores).filter_map(|change| async move {
        match change {
            Ok(data) => Some(Ok(Event::default()
                .event("progress")
                .data(data.to_string()))),
            // The watcher retries by itself; a client sees the next change when it comes.
            Err(e) => {
                tracing::debug!(error = %e, "event stream: watch interrupted, resuming");
                None
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
