//! Velero's restore ordering and resource exclusions, as data.
//!
//! Restoring in Velero's order (CRDs and namespaces first, then storage, then workloads, Cluster
//! API objects last) is what makes a backup written by one engine restorable by the other:
//! pods must find their PVCs, secrets and service accounts already present.

use crate::filter::GroupResource;

/// Velero's default high-priority restore order (`defaultRestorePriorities.HighPriorities`).
pub const HIGH_PRIORITIES: &[&str] = &[
    "customresourcedefinitions",
    "namespaces",
    "storageclasses",
    "volumesnapshotclass.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
    "datauploads.velero.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "serviceaccounts",
    "secrets",
    "configmaps",
    "limitranges",
    "pods",
    "replicasets.apps",
    "clusterclasses.cluster.x-k8s.io",
    "endpoints",
    "services",
];

/// Velero's low-priority group, restored after everything else (after the `-` separator):
/// Cluster API clusters must come last so their controllers find every dependent object.
pub const LOW_PRIORITIES: &[&str] = &[
    "clusterbootstraps.run.tanzu.vmware.com",
    "clusters.cluster.x-k8s.io",
    "clusterresourcesets.addons.cluster.x-k8s.io",
];

/// Resources Velero never restores: node-bound or runtime state, and Velero's own records,
/// which are synced from storage rather than restored.
pub const NON_RESTORABLE: &[&str] = &[
    "nodes",
    "events",
    "events.events.k8s.io",
    "backups.velero.io",
    "restores.velero.io",
    "resticrepositories.velero.io",
    "backuprepositories.velero.io",
    "csinodes.storage.k8s.io",
    "volumeattachments.storage.k8s.io",
];

/// Resources the direct engine never backs up: create-only review/token APIs with no stored
/// state, and `componentstatuses`, a computed view. Velero skips them too because they have no
/// `list` verb; listing them here lets us skip them without asking discovery.
pub const NEVER_BACKED_UP: &[&str] = &[
    "bindings",
    "componentstatuses",
    "tokenreviews.authentication.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
    "subjectaccessreviews.authorization.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "localsubjectaccessreviews.authorization.k8s.io",
];

fn contains(list: &[&str], gr: &GroupResource) -> bool {
    let s = gr.to_string();
    list.contains(&s.as_str())
}

/// Whether Velero would refuse to restore this resource.
pub fn is_non_restorable(gr: &GroupResource) -> bool {
    contains(NON_RESTORABLE, gr)
}

/// Whether the direct engine skips this resource when backing up.
pub fn is_never_backed_up(gr: &GroupResource) -> bool {
    contains(NEVER_BACKED_UP, gr)
}

/// Sort key: (tier, index within tier or 0, name). Tier 0 = high priority, 1 = the rest
/// alphabetically, 2 = low priority.
fn priority_key(gr: &GroupResource) -> (u8, usize, String) {
    let s = gr.to_string();
    if let Some(i) = HIGH_PRIORITIES.iter().position(|p| *p == s) {
        (0, i, s)
    } else if let Some(i) = LOW_PRIORITIES.iter().position(|p| *p == s) {
        (2, i, s)
    } else {
        (1, 0, s)
    }
}

/// Orders group-resources as Velero restores them: high priorities in list order, then all
/// others alphabetically by `resource.group`, then the low priorities in list order.
/// Duplicates are removed.
pub fn restore_order<I: IntoIterator<Item = GroupResource>>(resources: I) -> Vec<GroupResource> {
    let mut v: Vec<GroupResource> = resources.into_iter().collect();
    v.sort_by_cached_key(priority_key);
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gr(s: &str) -> GroupResource {
        GroupResource::parse(s)
    }

    #[test]
    fn orders_like_velero() {
        let input = [
            "clusters.cluster.x-k8s.io",
            "deployments.apps",
            "services",
            "namespaces",
            "configmaps",
            "customresourcedefinitions",
            "apiservices.apiregistration.k8s.io",
            "clusterbootstraps.run.tanzu.vmware.com",
            "pods",
            "configmaps",
        ];
        let out: Vec<String> = restore_order(input.iter().map(|s| gr(s)))
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            out,
            vec![
                "customresourcedefinitions",
                "namespaces",
                "configmaps",
                "pods",
                "services",
                "apiservices.apiregistration.k8s.io",
                "deployments.apps",
                "clusterbootstraps.run.tanzu.vmware.com",
                "clusters.cluster.x-k8s.io",
            ]
        );
    }

    #[test]
    fn lists_are_as_velero() {
        assert_eq!(HIGH_PRIORITIES.len(), 18);
        assert_eq!(HIGH_PRIORITIES[0], "customresourcedefinitions");
        assert_eq!(HIGH_PRIORITIES[17], "services");
        assert_eq!(LOW_PRIORITIES.len(), 3);
    }

    #[test]
    fn exclusions() {
        assert!(is_non_restorable(&gr("nodes")));
        assert!(is_non_restorable(&gr("events.events.k8s.io")));
        assert!(is_non_restorable(&gr("backups.velero.io")));
        assert!(!is_non_restorable(&gr("pods")));
        assert!(!is_non_restorable(&gr("schedules.velero.io")));
        assert!(is_never_backed_up(&gr(
            "tokenreviews.authentication.k8s.io"
        )));
        assert!(!is_never_backed_up(&gr("secrets")));
    }
}
