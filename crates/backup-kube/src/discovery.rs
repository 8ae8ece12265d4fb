//! Which resource types a cluster serves and which of them a backup reads.
//!
//! Every listable resource at its group's preferred version, minus what is never backed up
//! (nodes, events, create-only review APIs, Velero's own kinds) and minus duplicates served by
//! the legacy `extensions` group under the same plural (Velero's "cohabiting resources").

use std::collections::BTreeSet;

use backup_core::GroupResource;
use backup_core::velero_data::{is_never_backed_up, is_non_restorable};
use futures::StreamExt;
use kube::Client;
use kube::api::ApiResource;
use kube::core::GroupVersion;
use kube::discovery::{ApiGroup, Scope, pinned_group, verbs};

/// One resource type to back up.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// How to address it (preferred version).
    pub api: ApiResource,
    /// `resource.group`.
    pub group_resource: GroupResource,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

/// Whether the direct engine never reads this type: what Velero never backs up or restores
/// (nodes, events, Velero's own records) and what has no stored state.
pub fn is_skipped(gr: &GroupResource) -> bool {
    is_never_backed_up(gr) || is_non_restorable(gr) || gr.group == "velero.io"
}

/// Groups queried concurrently during discovery.
const DISCOVERY_CONCURRENCY: usize = 8;

/// What discovery found: the kinds to back up, and the API groups it could not read (an
/// unavailable aggregated API must not fail the whole backup; each becomes a warning).
#[derive(Debug, Default, Clone)]
pub struct Found {
    /// Kinds to back up, sorted by `resource.group`.
    pub resources: Vec<Discovered>,
    /// One message per group that could not be discovered.
    pub warnings: Vec<String>,
}

/// Discovery results shared by the backups of one cluster and refreshed after a while, so a
/// controller that backs a cluster up every few minutes does not ask for every API group each
/// time. A new API group shows up in backups at most `ttl` late.
#[derive(Debug, Clone)]
pub struct DiscoveryCache {
    ttl: std::time::Duration,
    last: std::sync::Arc<tokio::sync::Mutex<Option<Discovery>>>,
}

/// One discovery and when it was made.
type Discovery = (tokio::time::Instant, std::sync::Arc<Found>);

impl DiscoveryCache {
    /// An empty cache whose entries are used for `ttl`.
    pub fn new(ttl: std::time::Duration) -> Self {
        DiscoveryCache {
            ttl,
            last: std::sync::Arc::default(),
        }
    }

    /// The cached discovery if fresh, else a new one (one at a time per cache).
    pub async fn get(&self, client: &Client) -> Result<std::sync::Arc<Found>, kube::Error> {
        let mut last = self.last.lock().await;
        if let Some((at, found)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(found.clone());
        }
        let found = std::sync::Arc::new(discover(client).await?);
        *last = Some((tokio::time::Instant::now(), found.clone()));
        Ok(found)
    }
}

/// Runs discovery (every group at its preferred version, concurrently). Fails only when the
/// apiserver cannot be asked for its groups at all.
pub async fn discover(client: &Client) -> Result<Found, kube::Error> {
    let groups = client.list_api_groups().await?;
    let mut versions = vec![GroupVersion::gv("", "v1")];
    for g in groups.groups {
        let version = g
            .preferred_version
            .map(|p| p.version)
            .or_else(|| g.versions.first().map(|v| v.version.clone()));
        if let Some(version) = version {
            versions.push(GroupVersion::gv(&g.name, &version));
        }
    }
    let answers: Vec<(GroupVersion, Result<ApiGroup, kube::Error>)> =
        futures::stream::iter(versions)
            .map(|gv| async move {
                let answer = pinned_group(client, &gv).await;
                (gv, answer)
            })
            .buffer_unordered(DISCOVERY_CONCURRENCY)
            .collect()
            .await;
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for (gv, answer) in answers {
        let group = match answer {
            Ok(group) => group,
            Err(e) => {
                warnings.push(format!(
                    "API group {}/{} could not be discovered, its resources are not backed up: {}",
                    gv.group,
                    gv.version,
                    crate::errors::summary(&e)
                ));
                continue;
            }
        };
        for (api, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::GET) {
                continue;
            }
            let group_resource = GroupResource::new(&api.group, &api.plural);
            if is_skipped(&group_resource) {
                continue;
            }
            found.push(Discovered {
                namespaced: caps.scope == Scope::Namespaced,
                group_resource,
                api,
            });
        }
    }
    let plurals_elsewhere: BTreeSet<String> = found
        .iter()
        .filter(|d| d.api.group != "extensions")
        .map(|d| d.api.plural.clone())
        .collect();
    found.retain(|d| d.api.group != "extensions" || !plurals_elsewhere.contains(&d.api.plural));
    found.sort_by(|a, b| a.group_resource.cmp(&b.group_resource));
    warnings.sort();
    Ok(Found {
        resources: found,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_what_velero_skips() {
        for s in [
            "nodes",
            "events",
            "events.events.k8s.io",
            "backups.velero.io",
            "schedules.velero.io",
            "tokenreviews.authentication.k8s.io",
        ] {
            assert!(is_skipped(&GroupResource::parse(s)), "{s}");
        }
        for s in [
            "configmaps",
            "deployments.apps",
            "customresourcedefinitions.apiextensions.k8s.io",
        ] {
            assert!(!is_skipped(&GroupResource::parse(s)), "{s}");
        }
    }
}
