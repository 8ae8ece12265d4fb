//! What the requesting user must be allowed for an object to be admitted: our custom verbs on
//! the project's ManagedClusters, one check per cluster the object acts on. Pure, so every
//! kind's rule is tested exactly.
//!
//! | kind | needs, on each cluster it acts on |
//! |---|---|
//! | ClusterRestore | `restore` on each target (the source cluster when none is named); `restore-privileged` too when it may create privileged objects (see [`backup_core::privilege`]) |
//! | ClusterMigration | `backup` on the source; `restore` (and maybe `restore-privileged`) on each target |
//! | ClusterBackup | `backup` on each named cluster, or on all `managedclusters` for a selector (it picks clusters created later too) |
//! | EtcdBackupConfig | `backup` on its cluster |
//! | EtcdRestore | `restore` on its cluster |
//! | RestoreDrill | `backup` on each drilled cluster (all of them for a selector); `restore` on where it restores (the dedicated target, or each drilled cluster), and `restore-privileged` there too when what it restores may be privileged (a dedicated target takes cluster-scoped kinds) |

use std::fmt;

use backup_api::cluster_backup::{Selection, selection_of};
use backup_api::restore_drill::ValidTarget;
use backup_api::{
    ClusterBackupSpec, ClusterMigrationSpec, ClusterRestoreSpec, EtcdBackupConfigSpec,
    EtcdRestoreSpec, RestoreDrillSpec,
};
use backup_core::ExistingResourcePolicy;
use backup_core::privilege::{Privilege, privileges};
use serde::de::DeserializeOwned;

use crate::access::Action;

/// The verb to back a cluster up.
pub const BACKUP: &str = "backup";
/// The verb to restore into a cluster.
pub const RESTORE: &str = "restore";
/// The verb to restore objects that give power over a cluster, or to overwrite what exists.
pub const RESTORE_PRIVILEGED: &str = "restore-privileged";

/// One permission on the project's ManagedClusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// [`BACKUP`], [`RESTORE`] or [`RESTORE_PRIVILEGED`].
    pub verb: &'static str,
    /// The cluster, or `None` for every ManagedCluster of the project.
    pub cluster: Option<String>,
    /// Why the verb is needed, when it is not plain from the kind.
    pub because: Vec<Privilege>,
}

impl Needed {
    fn on(verb: &'static str, cluster: &str) -> Self {
        Needed {
            verb,
            cluster: Some(cluster.to_string()),
            because: Vec::new(),
        }
    }

    /// The action to ask a SubjectAccessReview about.
    pub fn action(&self) -> Action<'_> {
        let action = Action::on(self.verb, "managedclusters");
        match &self.cluster {
            Some(cluster) => action.named(cluster),
            None => action,
        }
    }

    /// The refusal when `user` lacks it in `namespace`, worded as Kubernetes' RBAC words its
    /// own, plus why the verb was asked for.
    pub fn refusal(&self, user: &str, namespace: &str) -> String {
        let what = match &self.cluster {
            Some(cluster) => format!("managedclusters.backupfleet.dev {cluster:?}"),
            None => "managedclusters.backupfleet.dev (all of them: the object selects clusters \
                     by label, including clusters created later)"
                .to_string(),
        };
        let mut refusal = format!(
            "User {user:?} cannot {} {what} in the namespace {namespace:?}",
            self.verb
        );
        if !self.because.is_empty() {
            let reasons: Vec<String> = self.because.iter().map(Privilege::to_string).collect();
            refusal.push_str(&format!(
                ", needed because {} (or ask the project's owner for {})",
                reasons.join("; "),
                self.verb
            ));
        }
        refusal
    }
}

/// Why an object could not be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What creating or changing an object of `kind` with this `spec` needs.
pub fn needed(kind: &str, spec: &serde_json::Value) -> Result<Vec<Needed>, Unreadable> {
    match kind {
        "ClusterRestore" => Ok(restore(&read::<ClusterRestoreSpec>(kind, spec)?)),
        "ClusterMigration" => Ok(migration(&read::<ClusterMigrationSpec>(kind, spec)?)),
        "ClusterBackup" => Ok(backup(&read::<ClusterBackupSpec>(kind, spec)?)),
        "EtcdBackupConfig" => {
            let spec = read::<EtcdBackupConfigSpec>(kind, spec)?;
            Ok(vec![Needed::on(BACKUP, &spec.cluster)])
        }
        "EtcdRestore" => {
            let spec = read::<EtcdRestoreSpec>(kind, spec)?;
            Ok(vec![Needed::on(RESTORE, &spec.cluster)])
        }
        "RestoreDrill" => Ok(drill(&read::<RestoreDrillSpec>(kind, spec)?)),
        other => Err(Unreadable(format!(
            "this webhook judges ClusterRestore, ClusterMigration, ClusterBackup, \
             EtcdBackupConfig, EtcdRestore and RestoreDrill, not {other}: the \
             ValidatingWebhookConfiguration sends it more than it should"
        ))),
    }
}

fn read<T: DeserializeOwned>(kind: &str, spec: &serde_json::Value) -> Result<T, Unreadable> {
    serde_json::from_value(spec.clone())
        .map_err(|e| Unreadable(format!("the {kind}'s spec cannot be read: {e}")))
}

/// `restore` on each target, and `restore-privileged` on each when the restore may create
/// privileged objects.
fn restore(spec: &ClusterRestoreSpec) -> Vec<Needed> {
    let targets = match spec.target_clusters.as_slice() {
        [] => std::slice::from_ref(&spec.source.cluster),
        named => named,
    };
    let privileged = privileges(&spec.options.filter, spec.options.existing_resource_policy);
    restores_into(targets, &privileged)
}

fn restores_into(targets: &[String], privileged: &[Privilege]) -> Vec<Needed> {
    let mut needed: Vec<Needed> = targets.iter().map(|t| Needed::on(RESTORE, t)).collect();
    if !privileged.is_empty() {
        needed.extend(targets.iter().map(|t| Needed {
            because: privileged.to_vec(),
            ..Needed::on(RESTORE_PRIVILEGED, t)
        }));
    }
    needed
}

/// `backup` on the source, and a restore's needs on each target (what the template backs up is
/// what is restored).
fn migration(spec: &ClusterMigrationSpec) -> Vec<Needed> {
    let privileged = privileges(&spec.template.filter, spec.existing_resource_policy);
    let mut needed = vec![Needed::on(BACKUP, &spec.source_cluster)];
    needed.extend(restores_into(&spec.target_clusters, &privileged));
    needed
}

/// `backup` on each named cluster; on all of the project's clusters when a selector (or
/// nothing) chooses them, or when the selection is invalid (the controller refuses it).
fn backup(spec: &ClusterBackupSpec) -> Vec<Needed> {
    let selection = selection_of(spec.clusters.as_ref()).unwrap_or(Selection::All);
    on_clusters(BACKUP, &selection)
}

/// A drill reads each drilled cluster's backups (`backup` on them) and restores them into its
/// target (`restore`, and `restore-privileged` for what may be privileged there). A spec that
/// does not validate needs nothing here: the controller refuses it with the field to fix.
fn drill(spec: &RestoreDrillSpec) -> Vec<Needed> {
    let Ok(valid) = spec.validate() else {
        return Vec::new();
    };
    let mut needed = on_clusters(BACKUP, &valid.selection);
    let privileged = privileges(&valid.restore_filter(), ExistingResourcePolicy::None);
    let targets = match &valid.target {
        ValidTarget::Cluster(target) => {
            on_clusters(RESTORE, &Selection::Names(vec![target.clone()]))
        }
        ValidTarget::SameCluster { .. } => on_clusters(RESTORE, &valid.selection),
    };
    for target in targets {
        if !privileged.is_empty() {
            needed.push(target.clone());
            needed.push(Needed {
                verb: RESTORE_PRIVILEGED,
                because: privileged.clone(),
                ..target
            });
        } else {
            needed.push(target);
        }
    }
    needed
}

/// `verb` on each cluster `selection` names; on all of the project's clusters for a selector
/// or all (it picks clusters created later too).
fn on_clusters(verb: &'static str, selection: &Selection) -> Vec<Needed> {
    match selection {
        Selection::Names(names) => names.iter().map(|c| Needed::on(verb, c)).collect(),
        Selection::All | Selection::Selector(_) => vec![Needed {
            verb,
            cluster: None,
            because: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn on(verb: &'static str, cluster: &str) -> Needed {
        Needed::on(verb, cluster)
    }

    #[test]
    fn a_plain_restore_needs_restore_on_each_target_and_nothing_more() {
        let spec = json!({
            "source": {"cluster": "c1", "backupName": "b"},
            "targetClusters": ["c2", "c3"],
            "includeClusterResources": false,
            "excludedResources": ["*.rbac.authorization.k8s.io"],
        });
        assert_eq!(
            needed("ClusterRestore", &spec).unwrap(),
            [on(RESTORE, "c2"), on(RESTORE, "c3")]
        );
    }

    #[test]
    fn a_restore_without_targets_restores_into_its_source() {
        let spec = json!({
            "source": {"cluster": "c1", "backupName": "b"},
            "includedNamespaces": ["shop"],
            "excludedResources": ["roles", "rolebindings"],
        });
        assert_eq!(
            needed("ClusterRestore", &spec).unwrap(),
            [on(RESTORE, "c1")]
        );
    }

    #[test]
    fn a_restore_that_may_create_privileged_objects_needs_the_privileged_verb_and_says_why() {
        let spec = json!({
            "source": {"cluster": "c1", "backupName": "b"},
            "targetClusters": ["c2"],
            "existingResourcePolicy": "update",
        });
        let needed = needed("ClusterRestore", &spec).unwrap();
        assert_eq!(
            needed,
            [
                on(RESTORE, "c2"),
                Needed {
                    because: vec![
                        Privilege::ClusterScoped,
                        Privilege::NamespacedRbac,
                        Privilege::UpdatesExisting
                    ],
                    ..on(RESTORE_PRIVILEGED, "c2")
                }
            ]
        );
        let refusal = needed[1].refusal("dev-owner", "team-a");
        assert!(
            refusal.starts_with(
                "User \"dev-owner\" cannot restore-privileged managedclusters.backupfleet.dev \
                 \"c2\" in the namespace \"team-a\", needed because it may restore \
                 cluster-scoped objects"
            ),
            "{refusal}"
        );
        assert!(
            refusal.contains("includeClusterResources: false"),
            "{refusal}"
        );
    }

    #[test]
    fn a_migration_needs_backup_on_its_source_and_restore_on_its_targets() {
        let spec = json!({
            "sourceCluster": "old",
            "targetClusters": ["new"],
            "template": {"includeClusterResources": false, "excludedResources": ["*.rbac.authorization.k8s.io"]},
        });
        assert_eq!(
            needed("ClusterMigration", &spec).unwrap(),
            [on(BACKUP, "old"), on(RESTORE, "new")]
        );
        let everything = json!({"sourceCluster": "old", "targetClusters": ["new"]});
        let verbs: Vec<&str> = needed("ClusterMigration", &everything)
            .unwrap()
            .iter()
            .map(|n| n.verb)
            .collect();
        assert_eq!(verbs, [BACKUP, RESTORE, RESTORE_PRIVILEGED]);
    }

    #[test]
    fn a_backup_by_name_needs_each_cluster_and_by_selector_all_of_them() {
        let named = json!({"clusters": {"names": ["c1", "c2"]}});
        assert_eq!(
            needed("ClusterBackup", &named).unwrap(),
            [on(BACKUP, "c1"), on(BACKUP, "c2")]
        );
        let all = Needed {
            verb: BACKUP,
            cluster: None,
            because: Vec::new(),
        };
        let selected = json!({"clusters": {"selector": {"matchLabels": {"env": "prod"}}}});
        assert_eq!(
            needed("ClusterBackup", &selected).unwrap(),
            std::slice::from_ref(&all)
        );
        assert_eq!(
            needed("ClusterBackup", &json!({})).unwrap(),
            std::slice::from_ref(&all)
        );
        assert!(
            all.refusal("u", "p")
                .contains("all of them: the object selects clusters by label")
        );
    }

    #[test]
    fn etcd_kinds_need_backup_or_restore_on_their_cluster() {
        let spec = json!({"cluster": "c1", "backupName": "snap"});
        assert_eq!(needed("EtcdRestore", &spec).unwrap(), [on(RESTORE, "c1")]);
        assert_eq!(
            needed("EtcdBackupConfig", &json!({"cluster": "c1"})).unwrap(),
            [on(BACKUP, "c1")]
        );
    }

    #[test]
    fn what_cannot_be_read_is_refused_with_the_reason() {
        let error = needed("ClusterRestore", &json!({"source": 3})).unwrap_err();
        assert!(
            error
                .0
                .starts_with("the ClusterRestore's spec cannot be read"),
            "{error}"
        );
        let other = needed("StorageLocation", &json!({})).unwrap_err();
        assert!(other.0.contains("not StorageLocation"), "{other}");
    }

    fn verbs_on_clusters(needed: &[Needed]) -> Vec<(&str, Option<&str>)> {
        needed
            .iter()
            .map(|n| (n.verb, n.cluster.as_deref()))
            .collect()
    }

    #[test]
    fn a_drill_into_a_dedicated_cluster_needs_backup_on_the_drilled_and_privileged_restore_on_the_target()
     {
        let spec = json!({"clusterBackup": "nightly", "clusters": {"names": ["c1", "c2"]},
            "target": {"cluster": "scratch"}});
        let needed = needed("RestoreDrill", &spec).unwrap();
        let verbs = verbs_on_clusters(&needed);
        assert_eq!(
            verbs,
            [
                (BACKUP, Some("c1")),
                (BACKUP, Some("c2")),
                (RESTORE, Some("scratch")),
                (RESTORE_PRIVILEGED, Some("scratch")),
            ]
        );
        assert!(needed[3].because.contains(&Privilege::ClusterScoped));
    }

    #[test]
    fn a_drill_in_scratch_namespaces_restores_into_each_drilled_cluster() {
        let spec = json!({"clusterBackup": "nightly",
            "clusters": {"selector": {"matchLabels": {"env": "prod"}}},
            "target": {"sameCluster": {"namespacePrefix": "drill-"}}});
        let needed = needed("RestoreDrill", &spec).unwrap();
        let verbs = verbs_on_clusters(&needed);
        assert_eq!(
            verbs,
            [(BACKUP, None), (RESTORE, None), (RESTORE_PRIVILEGED, None)]
        );
        assert!(
            !needed[2].because.contains(&Privilege::ClusterScoped),
            "no cluster-scoped kinds into the drilled cluster: {:?}",
            needed[2].because
        );
        assert!(needed[2].because.contains(&Privilege::NamespacedRbac));
    }

    #[test]
    fn an_invalid_drill_is_left_to_the_controller_and_an_unreadable_one_is_refused() {
        let invalid = json!({"clusterBackup": "nightly", "target": {}});
        assert_eq!(needed("RestoreDrill", &invalid).unwrap(), []);
        let unreadable = json!({"clusterBackup": 7});
        assert!(needed("RestoreDrill", &unreadable).is_err());
    }
}
