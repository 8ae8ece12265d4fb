//! The dashboard (`backup-controller run --api-addr`): a JSON API under `/api/v1` and a web
//! page under `/ui`, served by every replica. It reads through the management cluster's API
//! and storage and writes through the Kubernetes API, so it works on any replica. Kubernetes
//! RBAC decides who sees what (see [`auth`]); live progress comes as server-sent events
//! ([`events`]).

pub mod auth;
pub mod error;
pub mod events;
pub mod handlers;
pub mod page;
pub mod session;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    /// The controller's own client (TokenReview, SubjectAccessReview, reads and writes).
    pub client: kube::Client,
    /// Signs the page's session cookies.
    pub session_key: session::SessionKey,
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
        .with_state(state)
}
