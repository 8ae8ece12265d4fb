//! ManagedCluster: build a client from the kubeconfig Secret, ask the cluster for its version,
//! decide the engine (probing Velero for `velero` and `auto`), and report `Reachable` and
//! `VeleroReady`; again every `cluster_probe_every`, and at once when the Secret changes.

use std::sync::Arc;

use backup_velero::in_cluster::{ServerInfo, VeleroError};
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{with_finalizer, write_status};
use crate::context::Context;
use crate::error::Result;
use backup_api::status::{Condition, merge_conditions};
use backup_api::{EngineKind, ManagedCluster, ManagedClusterStatus};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "managedcluster";
/// Condition: the cluster's API answers.
pub const REACHABLE: &str = "Reachable";
/// Condition: a Velero server answers in the cluster.
pub const VELERO_READY: &str = "VeleroReady";

/// Whether the cluster answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Reachability {
    /// It did, with this version.
    Reachable {
        /// e.g. `v1.20.2`.
        version: String,
    },
    /// It did not.
    Unreachable {
        /// CamelCase reason.
        reason: String,
        /// What failed and what to fix.
        message: String,
    },
}

/// The engine decision and the Velero probe behind it.
pub struct EngineFinding {
    /// The engine in use.
    pub kind: EngineKind,
    /// The Velero probe, when one was made.
    pub velero: Option<Result<ServerInfo, VeleroError>>,
}

/// The status for what was found (pure).
pub fn status_for(
    reachability: &Reachability,
    engine: Option<&EngineFinding>,
    previous: &ManagedClusterStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> ManagedClusterStatus {
    let reachable = match reachability {
        Reachability::Reachable { version } => Condition::met(
            REACHABLE,
            "APIServerAnswered",
            format!("Kubernetes {version}"),
        ),
        Reachability::Unreachable { reason, message } => {
            Condition::unmet(REACHABLE, reason, message.clone())
        }
    };
    let velero = match engine.and_then(|e| e.velero.as_ref()) {
        Some(Ok(info)) => Condition::met(
            VELERO_READY,
            "VeleroAnswering",
            format!(
                "Velero {} answers in the cluster",
                info.server_version
                    .as_deref()
                    .unwrap_or("(version not reported)")
            ),
        ),
        Some(Err(e)) => Condition::unmet(VELERO_READY, velero_reason(e), e.to_string()),
        None => match engine {
            Some(_) => Condition::unknown(
                VELERO_READY,
                "NotUsed",
                "engine direct: the controller backs this cluster up without Velero",
            ),
            None => Condition::unknown(
                VELERO_READY,
                "ClusterUnreachable",
                "not checked: the cluster is unreachable",
            ),
        },
    };
    let conditions = [reachable, velero]
        .into_iter()
        .map(|c| c.at(now, generation))
        .collect();
    ManagedClusterStatus {
        engine: engine.map(|e| e.kind).or(previous.engine),
        kubernetes_version: match reachability {
            Reachability::Reachable { version } => Some(version.clone()),
            Reachability::Unreachable { .. } => previous.kubernetes_version.clone(),
        },
        last_probe_time: Some(now),
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, conditions),
    }
}

fn velero_reason(e: &VeleroError) -> &'static str {
    match e {
        VeleroError::NotInstalled { .. } => "VeleroNotInstalled",
        VeleroError::NotResponding { .. } => "VeleroNotResponding",
        _ => "VeleroCheckFailed",
    }
}

/// Reachability from a failed version request. The server's own words are never repeated
/// (see [`backup_kube::errors::summary`]).
pub fn unreachable(e: &kube::Error) -> Reachability {
    if backup_net::denied_in(e).is_some() {
        return Reachability::Unreachable {
            reason: "AddressNotAllowed".into(),
            message: format!(
                "{}; name the API server by an address outside the link-local and metadata \
                 ranges and the platform's own networks",
                backup_kube::errors::summary(e)
            ),
        };
    }
    let (reason, hint) = match backup_kube::errors::status_code(e) {
        Some(401) => (
            "Unauthorized",
            "the kubeconfig's credentials were rejected: renew the token or certificate in the Secret",
        ),
        Some(403) => (
            "Forbidden",
            "the kubeconfig's user may not read the cluster's version: grant it read access",
        ),
        _ => (
            "Unreachable",
            "check the server address in the kubeconfig and that the cluster is up",
        ),
    };
    Reachability::Unreachable {
        reason: reason.into(),
        message: format!("{}; {hint}", backup_kube::errors::summary(e)),
    }
}

/// Reconciles one ManagedCluster.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ManagedCluster", namespace = %cluster.metadata.namespace.as_deref().unwrap_or_default(), name = %cluster.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<ManagedCluster>, ctx: Arc<Context>) -> Result<Action> {
    with_finalizer(CONTROLLER, cluster, ctx, apply, cleanup).await
}

async fn apply(cluster: Arc<ManagedCluster>, ctx: Arc<Context>) -> Result<Action> {
    // A new cluster, a changed spec or new labels may change which ClusterBackups select it
    // and how it is backed up.
    let namespace = cluster.namespace().unwrap_or_default();
    let observed = cluster.status.as_ref().and_then(|s| s.observed_generation);
    let labels = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        cluster.labels().hash(&mut hasher);
        hasher.finish()
    };
    let key = format!("{namespace}/{}", cluster.name_any());
    if ctx.labels_changed(key, labels) || observed != cluster.metadata.generation {
        ctx.wake_backups_in(&namespace);
    }
    let (reachability, engine) = match ctx.clusters.handle(&cluster).await {
        Err(problem) if problem.is_retryable() => return Err(problem.into()),
        Err(problem) => (
            Reachability::Unreachable {
                reason: problem.reason().into(),
                message: problem.to_string(),
            },
            None,
        ),
        Ok(handle) => match handle.client.apiserver_version().await {
            Err(e) => (unreachable(&e), None),
            Ok(info) => {
                let (kind, velero) = handle.resolve_engine().await;
                (
                    Reachability::Reachable {
                        version: info.git_version,
                    },
                    Some(EngineFinding { kind, velero }),
                )
            }
        },
    };
    let previous = cluster.status.clone().unwrap_or_default();
    let status = status_for(
        &reachability,
        engine.as_ref(),
        &previous,
        cluster.metadata.generation,
        ctx.clock.now(),
    );
    let was = backup_api::status::find(&previous.conditions, REACHABLE).map(|c| c.status);
    let is = backup_api::status::find(&status.conditions, REACHABLE).map(|c| c.status);
    if was != is {
        let (warning, reason, note) = match &reachability {
            Reachability::Reachable { version } => {
                (false, "Reachable", format!("Kubernetes {version}"))
            }
            Reachability::Unreachable { reason, message } => {
                (true, reason.as_str(), message.clone())
            }
        };
        ctx.event(&cluster.object_ref(&()), warning, reason, "Probe", note)
            .await;
    }
    write_status(&ctx, cluster.as_ref(), &status).await?;
    let every = ctx.settings.cluster_probe_every;
    Ok(Action::requeue(match &reachability {
        Reachability::Unreachable { reason, .. } => {
            backup_kube::secrets::recheck_after(reason, every)
        }
        Reachability::Reachable { .. } => every,
    }))
}

async fn cleanup(cluster: Arc<ManagedCluster>, ctx: Arc<Context>) -> Result<Action> {
    ctx.clusters.forget(
        &cluster.namespace().unwrap_or_default(),
        &cluster.name_any(),
    );
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_api::status::find;

    fn now() -> Timestamp {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_reachable_direct_cluster_reports_its_version_and_that_velero_is_not_used() {
        let s = status_for(
            &Reachability::Reachable {
                version: "v1.20.2".into(),
            },
            Some(&EngineFinding {
                kind: EngineKind::Direct,
                velero: None,
            }),
            &ManagedClusterStatus::default(),
            Some(1),
            now(),
        );
        assert_eq!(s.engine, Some(EngineKind::Direct));
        assert_eq!(s.kubernetes_version.as_deref(), Some("v1.20.2"));
        let r = find(&s.conditions, REACHABLE).unwrap();
        assert!(r.is_true());
        assert!(r.message.contains("v1.20.2"));
        assert_eq!(find(&s.conditions, VELERO_READY).unwrap().reason, "NotUsed");
    }

    #[test]
    fn auto_without_velero_falls_back_to_direct_and_says_why() {
        let s = status_for(
            &Reachability::Reachable {
                version: "v1.20.2".into(),
            },
            Some(&EngineFinding {
                kind: EngineKind::Direct,
                velero: Some(Err(VeleroError::NotInstalled {
                    reason: "the API velero.io/v1 is not served".into(),
                })),
            }),
            &ManagedClusterStatus::default(),
            Some(1),
            now(),
        );
        assert_eq!(s.engine, Some(EngineKind::Direct));
        let v = find(&s.conditions, VELERO_READY).unwrap();
        assert!(!v.is_true());
        assert_eq!(v.reason, "VeleroNotInstalled");
        assert!(v.message.contains("install Velero"), "{}", v.message);
    }

    #[test]
    fn an_unreachable_cluster_keeps_its_last_known_version_and_engine() {
        let previous = ManagedClusterStatus {
            engine: Some(EngineKind::Velero),
            kubernetes_version: Some("v1.20.2".into()),
            ..ManagedClusterStatus::default()
        };
        let s = status_for(
            &Reachability::Unreachable {
                reason: "KubeconfigSecretMissing".into(),
                message: "Secret \"c1-kubeconfig\" does not exist".into(),
            },
            None,
            &previous,
            Some(2),
            now(),
        );
        assert_eq!(s.engine, Some(EngineKind::Velero));
        assert_eq!(s.kubernetes_version.as_deref(), Some("v1.20.2"));
        let r = find(&s.conditions, REACHABLE).unwrap();
        assert_eq!(r.reason, "KubeconfigSecretMissing");
        assert!(!r.is_true());
    }

    #[test]
    fn rejected_credentials_are_told_apart_from_an_unreachable_server() {
        let e = kube::Error::Api(
            kube::core::Status::failure("Unauthorized", "Unauthorized")
                .with_code(401)
                .boxed(),
        );
        match unreachable(&e) {
            Reachability::Unreachable { reason, message } => {
                assert_eq!(reason, "Unauthorized");
                assert!(message.contains("renew the token"));
            }
            other => panic!("{other:?}"),
        }
    }
}
