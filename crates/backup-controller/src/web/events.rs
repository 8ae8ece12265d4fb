//! `GET /api/v1/namespaces/{ns}/events`: live progress as server-sent events. Each change of a
//! ClusterBackup or ClusterRestore of the project (a run starting, its items counting up, its
//! end) is one `progress` event with the object's phase and per-cluster state, so a dashboard
//! follows runs without polling. The caller must be allowed to list ClusterBackups there;
//! ClusterRestores are sent only to callers who may list those too.
//!
//! Every stream is fed from the dashboard's own two watches ([`Feed`]), however many are open:
//! streams cost the API server nothing. Each user may hold
//! [`STREAMS_PER_USER`](super::limits::STREAMS_PER_USER) streams. A stream is authorized again
//! every [`REAUTHORIZE_EVERY`]: a revoked token or a removed binding ends it within that, plus
//! the API server's own token cache (10 s) and ours ([`AUTH_TTL`](super::cache::AUTH_TTL)).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use kube::ResourceExt;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::WebState;
use super::auth::{Action, Caller, allowed, bearer, review};
use super::cache::Objects;
use super::error::{ApiError, ApiResult};
use super::limits::StreamGuard;
use backup_api::{ClusterBackup, ClusterRestore};

/// How often an open stream checks that its caller still may follow it.
pub const REAUTHORIZE_EVERY: Duration = Duration::from_secs(15);

/// Changes a slow stream may fall behind before it skips ahead.
const FEED_CAPACITY: usize = 1024;

/// One change of one of our objects, as streams send it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its namespace.
    pub namespace: String,
    /// `ClusterBackup` or `ClusterRestore`.
    pub kind: &'static str,
    /// The event's data.
    pub data: Arc<str>,
}

/// What the dashboard's watches saw change, for every open stream.
#[derive(Clone)]
pub struct Feed(broadcast::Sender<Change>);

impl Default for Feed {
    fn default() -> Self {
        Feed(broadcast::channel(FEED_CAPACITY).0)
    }
}

impl Feed {
    /// Sends `object`'s change to the open streams (none open: nothing is made).
    pub fn send<K: Progress>(&self, object: &K) {
        if self.0.receiver_count() == 0 {
            return;
        }
        let _ = self.0.send(Change {
            namespace: object.namespace().unwrap_or_default(),
            kind: K::KIND,
            data: object.progress().to_string().into(),
        });
    }
}

/// What a stream says of an object.
pub trait Progress: ResourceExt {
    /// Its kind, as the event names it.
    const KIND: &'static str;
    /// The event's data.
    fn progress(&self) -> Value;
}

impl Progress for ClusterBackup {
    const KIND: &'static str = "ClusterBackup";
    fn progress(&self) -> Value {
        let status = self.status.clone().unwrap_or_default();
        json!({"kind": Self::KIND, "name": self.name_any(), "phase": status.phase,
               "clusters": status.clusters})
    }
}

impl Progress for ClusterRestore {
    const KIND: &'static str = "ClusterRestore";
    fn progress(&self) -> Value {
        let status = self.status.clone().unwrap_or_default();
        json!({"kind": Self::KIND, "name": self.name_any(), "phase": status.phase,
               "clusters": status.clusters})
    }
}

/// The event stream of the API.
pub async fn events(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let token = bearer(&headers)?.to_string();
    progress(&state, &ns, token).await
}

/// Who follows a stream, and what they may see of it.
struct Follower {
    token: String,
    namespace: String,
    restores: bool,
}

impl Follower {
    /// The caller of `token`, if they may follow `namespace`'s stream: 404 as if absent when
    /// they may not list ClusterBackups there.
    async fn authorize(
        state: &WebState,
        token: String,
        namespace: &str,
    ) -> ApiResult<(Self, Caller)> {
        let caller = review(state, &token).await?;
        let backups = Action::on("list", "clusterbackups");
        if !allowed(state, &caller, namespace, backups).await? {
            return Err(ApiError::not_found(format!(
                "nothing of that kind in namespace {namespace:?}, or you may not see it"
            )));
        }
        let restores = allowed(
            state,
            &caller,
            namespace,
            Action::on("list", "clusterrestores"),
        )
        .await?;
        let follower = Follower {
            token,
            namespace: namespace.to_string(),
            restores,
        };
        Ok((follower, caller))
    }

    fn sees(&self, change: &Change) -> bool {
        change.namespace == self.namespace && (change.kind == ClusterBackup::KIND || self.restores)
    }
}

/// The progress events of `ns` for the caller of `token` (see the module's comment).
pub(super) async fn progress(
    state: &WebState,
    ns: &str,
    token: String,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
    let (follower, caller) = Follower::authorize(state, token, ns).await?;
    let guard = state.limits.open_stream(&caller.user).inspect_err(|_| {
        state.metrics.api_limited("streams");
    })?;
    let objects = state.objects().await?.clone();
    let changes = state.feed.0.subscribe();
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(follow(
        state.clone(),
        follower,
        objects,
        changes,
        sender,
        guard,
    ));
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sends what `follower` sees: the objects as they are, then each change, until the client
/// leaves or its authorization ends.
async fn follow(
    state: WebState,
    mut follower: Follower,
    objects: Objects,
    mut changes: broadcast::Receiver<Change>,
    sender: mpsc::Sender<Event>,
    _guard: StreamGuard,
) {
    let progress = |data: &str| Event::default().event("progress").data(data);
    let backups = Objects::in_namespace(&objects.backups, &follower.namespace);
    let restores = match follower.restores {
        true => Objects::in_namespace(&objects.restores, &follower.namespace),
        false => Vec::new(),
    };
    let now = backups
        .iter()
        .map(|b| b.progress())
        .chain(restores.iter().map(|r| r.progress()));
    for state in now {
        if sender.send(progress(&state.to_string())).await.is_err() {
            return;
        }
    }
    let mut check = tokio::time::interval(REAUTHORIZE_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) if follower.sees(&change) => {
                    if sender.send(progress(&change.data)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Too slow: the next change still comes; each event is an object's whole state.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = check.tick() => {
                match Follower::authorize(&state, follower.token.clone(), &follower.namespace).await {
                    Ok((now, _)) => follower = now,
                    Err(e) => {
                        let ended = Event::default().event("ended").data(e.message);
                        let _ = sender.send(ended).await;
                        return;
                    }
                }
            }
            _ = sender.closed() => return,
        }
    }
}
