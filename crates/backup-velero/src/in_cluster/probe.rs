//! Is Velero there and answering? And signed download URLs through DownloadRequests. Both wait
//! for a Velero server to answer, so both are bounded in time and fail with a typed error.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};

use super::InClusterEngine;
use super::error::{VeleroError, api_code};
use super::translate::object_name;
use crate::api::{
    API_VERSION, DownloadRequest, DownloadRequestPhase, DownloadRequestSpec, DownloadTarget,
    DownloadTargetKind, PluginInfo, REQUIRED_RESOURCES, ServerStatusRequest,
    ServerStatusRequestPhase, ServerStatusRequestSpec,
};

/// How often we re-read a request while waiting for Velero.
const POLL: Duration = Duration::from_millis(200);

/// What a running Velero server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// e.g. `v1.16.0`.
    pub server_version: Option<String>,
    /// Its plugins.
    pub plugins: Vec<PluginInfo>,
}

impl InClusterEngine {
    /// Fails fast with [`VeleroError::NotInstalled`] unless the cluster serves every Velero
    /// resource the engine uses (API discovery, one request).
    pub async fn crds_present(&self) -> Result<(), VeleroError> {
        let list = match self.client.list_api_group_resources(API_VERSION).await {
            Ok(l) => l,
            Err(e) if api_code(&e) == Some(404) => {
                return Err(VeleroError::NotInstalled {
                    reason: format!(
                        "the API {API_VERSION} is not served (Velero's CRDs are missing)"
                    ),
                });
            }
            Err(e) => return Err(VeleroError::api("discovering velero.io/v1", e)),
        };
        let missing: Vec<&str> = REQUIRED_RESOURCES
            .iter()
            .copied()
            .filter(|r| !list.resources.iter().any(|x| x.name == *r))
            .collect();
        if !missing.is_empty() {
            return Err(VeleroError::NotInstalled {
                reason: format!("{API_VERSION} lacks the resources {}", missing.join(", ")),
            });
        }
        Ok(())
    }

    /// Checks that Velero is installed (CRDs, namespace) and that a server answers a
    /// ServerStatusRequest within `timeout`, instead of letting callers wait forever.
    pub async fn check_velero(&self, timeout: Duration) -> Result<ServerInfo, VeleroError> {
        self.crds_present().await?;
        let api = self.api::<ServerStatusRequest>();
        let mut req = ServerStatusRequest::new("", ServerStatusRequestSpec::default());
        req.metadata.name = None;
        req.metadata.generate_name = Some("backup-fleet-probe-".into());
        let created = match api.create(&PostParams::default(), &req).await {
            Ok(r) => r.name_any(),
            Err(e) => {
                let action = "creating a server status request".to_string();
                return Err(self.explain(action, e, "server status request", "").await);
            }
        };
        let start = Instant::now();
        let result = loop {
            match api.get(&created).await {
                Ok(r) => {
                    let status = r.status.unwrap_or_default();
                    if status.phase == Some(ServerStatusRequestPhase::Processed) {
                        break Ok(ServerInfo {
                            server_version: status.server_version,
                            plugins: status.plugins.unwrap_or_default(),
                        });
                    }
                }
                Err(e) => break Err(VeleroError::api("reading server status request", e)),
            }
            if start.elapsed() >= timeout {
                break Err(VeleroError::NotResponding {
                    namespace: self.cfg.velero_namespace.clone(),
                    request: created.clone(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        };
        // Best effort: Velero also garbage-collects processed requests.
        let _ = api.delete(&created, &DeleteParams::default()).await;
        result
    }

    /// A signed URL for an artifact of core backup or restore `name` (`Restore*` kinds name a
    /// restore, all others a backup), via a DownloadRequest answered within `timeout`.
    pub async fn download_url(
        &self,
        kind: DownloadTargetKind,
        name: &str,
        timeout: Duration,
    ) -> Result<String, VeleroError> {
        let object_kind = if kind.as_str().starts_with("Restore") {
            "restore"
        } else {
            "backup"
        };
        let target = object_name(&self.cfg.cluster, object_kind, name);
        let api = self.api::<DownloadRequest>();
        let mut req = DownloadRequest::new(
            "",
            DownloadRequestSpec {
                target: DownloadTarget {
                    kind: kind.clone(),
                    name: target.clone(),
                },
                extra: Default::default(),
            },
        );
        req.metadata.name = None;
        req.metadata.generate_name = Some(format!("{target}-"));
        let created = match api.create(&PostParams::default(), &req).await {
            Ok(r) => r.name_any(),
            Err(e) => {
                let action = format!("creating download request for {target}");
                return Err(self.explain(action, e, "download request", &target).await);
            }
        };
        let start = Instant::now();
        loop {
            let r = api
                .get(&created)
                .await
                .map_err(|e| VeleroError::api("reading download request", e))?;
            let status = r.status.unwrap_or_default();
            if status.phase == Some(DownloadRequestPhase::Processed)
                && let Some(url) = status.download_url.filter(|u| !u.is_empty())
            {
                return Ok(url);
            }
            if start.elapsed() >= timeout {
                return Err(VeleroError::Timeout {
                    what: format!("DownloadRequest {created} ({kind} of {target})"),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
