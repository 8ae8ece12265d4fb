//! What a restore may create that gives power over the cluster it restores into.
//!
//! Restoring is writing arbitrary objects into a cluster with the controller's rights, so who
//! may restore what is decided on what the restore *may* create, before anything is read from
//! storage: a ClusterRoleBinding in the backup would make its owner cluster-admin of the
//! target, a Role or RoleBinding namespace-admin, an admission webhook or a CRD changes what
//! the cluster accepts, and `existingResourcePolicy: update` overwrites what is there (say,
//! `aws-auth`). These need a verb of their own (`restore-privileged`); a restore without it
//! stays possible by excluding them explicitly.
//!
//! The question is an allow-list one: unless the filter rules a kind out for certain, it may
//! be restored. Namespaces are the one cluster-scoped kind that is not privileged: every
//! namespaced object needs one.

use std::fmt;

use crate::filter::{GroupResource, ResourceFilter};
use crate::spec::ExistingResourcePolicy;

/// The namespaced kinds that grant rights: RBAC's Roles and RoleBindings.
pub const RBAC_NAMESPACED: [&str; 2] = [
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
];

/// One reason a restore is privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// It may create cluster-scoped objects other than Namespaces.
    ClusterScoped,
    /// It may create Roles or RoleBindings.
    NamespacedRbac,
    /// It overwrites objects that exist (`existingResourcePolicy: update`).
    UpdatesExisting,
}

impl fmt::Display for Privilege {
    /// What the restore may do, and how to leave it out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Privilege::ClusterScoped => {
                "it may restore cluster-scoped objects (ClusterRoles and their bindings, \
                 admission webhooks, CRDs, ...): set includeClusterResources: false to leave \
                 them out"
            }
            Privilege::NamespacedRbac => {
                "it may restore Roles and RoleBindings: add roles.rbac.authorization.k8s.io and \
                 rolebindings.rbac.authorization.k8s.io to excludedResources to leave them out"
            }
            Privilege::UpdatesExisting => {
                "existingResourcePolicy: update overwrites objects the target has: use none"
            }
        })
    }
}

/// Why restoring through `filter` under `policy` is privileged; empty when it is not.
pub fn privileges(filter: &ResourceFilter, policy: ExistingResourcePolicy) -> Vec<Privilege> {
    let mut found = Vec::new();
    if admits_cluster_scoped(filter) {
        found.push(Privilege::ClusterScoped);
    }
    if RBAC_NAMESPACED
        .iter()
        .any(|kind| filter.matches_resource(&GroupResource::parse(kind)))
    {
        found.push(Privilege::NamespacedRbac);
    }
    if policy == ExistingResourcePolicy::Update {
        found.push(Privilege::UpdatesExisting);
    }
    found
}

/// Whether `filter` can select a cluster-scoped object other than a Namespace, whatever the
/// backup holds. Without discovery an include pattern cannot be known to name only namespaced
/// kinds, so only lists that name nothing but `namespaces`, or switch cluster-scoped objects
/// off, rule them out.
fn admits_cluster_scoped(filter: &ResourceFilter) -> bool {
    let only_namespaces = |list: &[String]| {
        !list.is_empty()
            && list.iter().all(|p| {
                matches!(
                    p.to_ascii_lowercase().as_str(),
                    "namespaces" | "namespaces.v1"
                )
            })
    };
    let new_style = !filter.included_cluster_scoped_resources.is_empty()
        || !filter.excluded_cluster_scoped_resources.is_empty();
    if new_style {
        return match filter.included_cluster_scoped_resources.as_slice() {
            [] => filter.all_namespaces(),
            included => !only_namespaces(included),
        };
    }
    let selected = match filter.include_cluster_resources {
        Some(false) => false,
        Some(true) => true,
        None => filter.all_namespaces(),
    };
    selected && !only_namespaces(&filter.included_resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExistingResourcePolicy::{None as Keep, Update};
    use Privilege::*;

    fn filter(json: serde_json::Value) -> ResourceFilter {
        serde_json::from_value(json).expect("a filter")
    }

    #[test]
    fn a_restore_of_everything_is_privileged_for_every_reason() {
        assert_eq!(
            privileges(&ResourceFilter::default(), Update),
            [ClusterScoped, NamespacedRbac, UpdatesExisting]
        );
    }

    #[test]
    fn excluding_cluster_scoped_objects_and_rbac_explicitly_makes_it_unprivileged() {
        let plain = filter(serde_json::json!({
            "includeClusterResources": false,
            "excludedResources": RBAC_NAMESPACED,
        }));
        assert_eq!(privileges(&plain, Keep), []);
        assert_eq!(privileges(&plain, Update), [UpdatesExisting]);
        // A glob over the group excludes both as well.
        let globbed = filter(serde_json::json!({
            "includeClusterResources": false,
            "excludedResources": ["*.rbac.authorization.k8s.io"],
        }));
        assert_eq!(privileges(&globbed, Keep), []);
    }

    #[test]
    fn naming_some_namespaces_leaves_cluster_scoped_objects_out_but_not_rbac() {
        let some = filter(serde_json::json!({"includedNamespaces": ["shop"]}));
        assert_eq!(privileges(&some, Keep), [NamespacedRbac]);
        let every = filter(serde_json::json!({"includedNamespaces": ["*"]}));
        assert_eq!(privileges(&every, Keep), [ClusterScoped, NamespacedRbac]);
    }

    #[test]
    fn an_include_list_rules_kinds_out_only_when_it_names_nothing_privileged() {
        let apps = filter(serde_json::json!({
            "includedResources": ["deployments.apps", "configmaps"],
            "includeClusterResources": false,
        }));
        assert_eq!(privileges(&apps, Keep), []);
        // Included cluster-scoped kinds cannot be told apart from namespaced ones without
        // discovery: anything but `namespaces` counts.
        let with_cluster = filter(serde_json::json!({
            "includedResources": ["deployments.apps"],
            "includeClusterResources": true,
        }));
        assert_eq!(privileges(&with_cluster, Keep), [ClusterScoped]);
        let namespaces_only = filter(serde_json::json!({
            "includedResources": ["namespaces"],
            "includeClusterResources": true,
        }));
        assert_eq!(privileges(&namespaces_only, Keep), []);
    }

    #[test]
    fn the_new_style_lists_are_read_the_same_way() {
        let excluded = filter(serde_json::json!({
            "excludedClusterScopedResources": ["clusterrolebindings.rbac.authorization.k8s.io"],
        }));
        assert!(
            privileges(&excluded, Keep).contains(&ClusterScoped),
            "excluding one privileged kind leaves the others"
        );
        // The new style has no namespaced lists here, so Roles stay possible.
        let namespaces = filter(serde_json::json!({
            "includedClusterScopedResources": ["namespaces"],
        }));
        assert_eq!(privileges(&namespaces, Keep), [NamespacedRbac]);
        let crds = filter(serde_json::json!({
            "includedClusterScopedResources": ["customresourcedefinitions.apiextensions.k8s.io"],
        }));
        assert_eq!(privileges(&crds, Keep), [ClusterScoped, NamespacedRbac]);
    }

    #[test]
    fn each_reason_says_how_to_leave_it_out() {
        assert!(
            ClusterScoped
                .to_string()
                .contains("includeClusterResources: false")
        );
        assert!(NamespacedRbac.to_string().contains("excludedResources"));
        assert!(UpdatesExisting.to_string().contains("use none"));
    }
}
