//! The dashboard (`backup-controller run --api-addr`): a JSON API under `/api/v1` and a web
//! page under `/ui`, served by every replica. It reads from its own caches ([`cache`]: watches
//! of the project objects, recent RBAC answers, storage listings) and writes through the
//! Kubernetes API, so it works on any replica, leader or not. Kubernetes RBAC decides who sees
//! what (see [`auth`]); live progress comes as server-sent events ([`events`]).

pub mod acting;
pub mod auth;
pub mod cache;
pub mod error;
pub mod events;
pub mod handlers;
mod hardening;
pub mod limits;
pub mod page;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, reflector, watcher};

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    /// The controller's own client (TokenReview, SubjectAccessReview, reads and writes).
    pub client: kube::Client,
    /// Seals the page's session cookies.
    pub session_key: session::SessionKey,
    /// How the page's cookies are set (over TLS or not).
    pub cookies: session::Cookies,
    /// The audience tokens must be issued for, when set.
    pub audience: Option<String>,
    /// The project objects, as watched.
    pub objects: cache::Objects,
    /// Tokens, RBAC answers, opened locations and storage listings.
    pub cache: Arc<cache::WebCache>,
    /// Opens locations (and keeps what it opened while nothing changed).
    pub locations: backup_kube::locations::Locations,
    /// Changes of ClusterBackups and ClusterRestores, for the event streams.
    pub feed: events::Feed,
    /// Its limits ([`limits`]).
    pub limits: Arc<limits::Limits>,
    /// The controller's metrics (TokenReviews made, requests limited).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How callers sign in.
pub struct SignIn {
    /// Seals the page's session cookies.
    pub session_key: session::SessionKey,
    /// How the page's cookies are set.
    pub cookies: session::Cookies,
    /// The audience tokens must be issued for, when set.
    pub audience: Option<String>,
}

/// How long a request waits for the first listing of the watched objects.
const OBJECTS_READY_WITHIN: Duration = Duration::from_secs(20);

impl WebState {
    /// The state of a dashboard over the objects of `namespace` (all when `None`), with the
    /// watches that keep its stores current running in the background until the runtime ends.
    pub fn start(
        client: kube::Client,
        namespace: Option<&str>,
        sign_in: SignIn,
        tenancy: backup_kube::tenancy::TenantPolicy,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let feed = events::Feed::default();
        let objects = cache::Objects {
            locations: watch_into_store(&client, namespace, |_| {}),
            clusters: watch_into_store(&client, namespace, |_| {}),
            backups: watch_into_store(&client, namespace, {
                let feed = feed.clone();
                move |b| feed.send(b)
            }),
            restores: watch_into_store(&client, namespace, {
                let feed = feed.clone();
                move |r| feed.send(r)
            }),
            drills: watch_into_store(&client, namespace, |_| {}),
        };
        WebState {
            locations: backup_kube::locations::Locations::new(client.clone(), tenancy),
            client,
            session_key: sign_in.session_key,
            cookies: sign_in.cookies,
            audience: sign_in.audience,
            objects,
            cache: Arc::default(),
            feed,
            limits: Arc::default(),
            metrics,
        }
    }

    /// The watched objects, once each store holds a complete listing (else 503).
    pub async fn objects(&self) -> error::ApiResult<&cache::Objects> {
        let ready = async {
            self.objects.locations.wait_until_ready().await?;
            self.objects.clusters.wait_until_ready().await?;
            self.objects.backups.wait_until_ready().await?;
            self.objects.restores.wait_until_ready().await?;
            self.objects.drills.wait_until_ready().await
        };
        match tokio::time::timeout(OBJECTS_READY_WITHIN, ready).await {
            Ok(Ok(())) => Ok(&self.objects),
            _ => Err(error::ApiError::unavailable(
                "the dashboard has not finished reading the project objects from the \
                 management cluster yet; try again in a few seconds",
            )),
        }
    }
}

/// A store of the `K`s of `namespace`, filled by a watch running in the background, which
/// also hands each changed object to `changed`.
fn watch_into_store<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    changed: impl Fn(&K) + Send + 'static,
) -> reflector::Store<K>
where
    K: crate::runtime::Watched + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api = crate::runtime::api::<K>(client, namespace);
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .for_each(move |event| {
            match event {
                // A listing after the watch was interrupted may hold changes streams missed.
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    changed(&object)
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "dashboard watch interrupted; resuming"),
            }
            futures::future::ready(())
        });
    tokio::spawn(stream);
    store
}

/// The API's and the page's routes.
pub fn router(state: WebState) -> Router {
    use handlers::*;
    let ui_backup = "/ui/projects/{ns}/clusters/{cluster}/backups/{name}";
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(page::index))
        .route("/ui/login", post(page::login))
        .route("/ui/logout", post(page::logout))
        .route("/ui/projects", get(page::projects))
        .route("/ui/projects/{ns}", get(page::project))
        .route("/ui/projects/{ns}/restores", get(page::restores))
        .route("/ui/projects/{ns}/events", get(page::events))
        .route(
            "/ui/projects/{ns}/clusterbackups/{name}/run",
            post(page::run_now),
        )
        .route("/ui/projects/{ns}/clusters/{cluster}", get(page::cluster))
        .route(&format!("{ui_backup}/download"), get(page::download))
        .route(&format!("{ui_backup}/delete"), post(page::delete))
        .route(&format!("{ui_backup}/plan"), post(page::plan))
        .route(&format!("{ui_backup}/restore"), post(page::restore))
        .route("/api/v1/namespaces", get(namespaces))
        .route("/api/v1/namespaces/{ns}/events", get(events::events))
        .route(
            "/api/v1/namespaces/{ns}/storagelocations",
            get(storage_locations),
        )
        .route("/api/v1/namespaces/{ns}/clusters", get(clusters))
        .route("/api/v1/namespaces/{ns}/restoredrills", get(restore_drills))
        .route(
            "/api/v1/namespaces/{ns}/clusterbackups",
            get(cluster_backups),
        )
        .route(
            "/api/v1/namespaces/{ns}/clusterbackups/{name}/run",
            post(run_now),
        )
        .route(
            "/api/v1/namespaces/{ns}/clusterrestores",
            post(create_restore),
        )
        .route(
            "/api/v1/namespaces/{ns}/clusters/{cluster}/backups",
            get(backups).delete(delete_backups),
        )
        .route(
            "/api/v1/namespaces/{ns}/clusters/{cluster}/backups/{name}",
            get(backup).delete(delete_backup),
        )
        .route(
            "/api/v1/namespaces/{ns}/clusters/{cluster}/backups/{name}/download",
            get(download),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::within_limits,
        ))
        .layer(axum::middleware::from_fn(hardening::with_secure_headers))
        .with_state(state)
}
