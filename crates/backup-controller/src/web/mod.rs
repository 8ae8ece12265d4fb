//! The dashboard's JSON API (`backup-controller run --api-addr`): served by every replica, it
//! reads through the management cluster's API and storage, and writes through the Kubernetes
//! API, so it works on any replica. Kubernetes RBAC decides who sees what (see
//! [`auth`]). Not here yet: the web page, server-sent events and the batch delete.

pub mod auth;
pub mod error;
pub mod handlers;

use axum::Router;
use axum::routing::{get, post};

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    /// The controller's own client (TokenReview, SubjectAccessReview, reads and writes).
    pub client: kube::Client,
}

/// The API's routes.
pub fn router(state: WebState) -> Router {
    use handlers::*;
    Router::new()
        .route("/api/v1/namespaces", get(namespaces))
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
            get(backups),
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
