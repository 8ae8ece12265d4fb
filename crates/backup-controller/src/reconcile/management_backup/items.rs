//! What a ManagementBackup holds beyond its filter: every object of our kinds in every
//! namespace, and the Secrets and ConfigMaps they reference, as the direct engine's additional
//! items (no Velero filter can name them).

use backup_core::GroupResource;
use backup_velero::direct::AdditionalItem;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use backup_api::{
    ClusterBackup, ClusterMigration, ClusterRestore, EtcdBackupConfig, EtcdRestore, ManagedCluster,
    ManagementBackup, StorageLocation,
};

/// Every object of our kinds, and the Secrets and ConfigMaps they reference, as the engine's
/// additional items.
pub async fn our_objects(
    client: &kube::Client,
) -> std::result::Result<Vec<AdditionalItem>, kube::Error> {
    let mut items = Vec::new();
    items.extend(list_kind::<StorageLocation>(client).await?);
    items.extend(list_kind::<ManagedCluster>(client).await?);
    items.extend(list_kind::<ClusterBackup>(client).await?);
    items.extend(list_kind::<ClusterRestore>(client).await?);
    items.extend(list_kind::<ClusterMigration>(client).await?);
    items.extend(list_kind::<EtcdBackupConfig>(client).await?);
    items.extend(list_kind::<EtcdRestore>(client).await?);
    items.extend(list_kind::<ManagementBackup>(client).await?);
    items.sort();
    items.dedup();
    Ok(items)
}

/// The objects of one kind in every namespace, with what each references.
async fn list_kind<K>(
    client: &kube::Client,
) -> std::result::Result<Vec<AdditionalItem>, kube::Error>
where
    K: Resource<DynamicType = ()> + References + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let own = GroupResource::parse(&format!("{}.{}", K::plural(&()), K::group(&())));
    let mut items = Vec::new();
    for object in api.list(&ListParams::default()).await? {
        let namespace = object.namespace().unwrap_or_default();
        items.push(AdditionalItem {
            group_resource: own.clone(),
            namespace: namespace.clone(),
            name: object.name_any(),
        });
        for (resource, name) in object.references() {
            items.push(AdditionalItem {
                group_resource: GroupResource::parse(resource),
                namespace: namespace.clone(),
                name,
            });
        }
    }
    Ok(items)
}

/// The Secrets and ConfigMaps (of its own namespace) an object of ours reads.
trait References {
    /// `(resource, name)` pairs: `("secrets", "s3-creds")`.
    fn references(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl References for StorageLocation {
    fn references(&self) -> Vec<(&'static str, String)> {
        let credential = self.spec.credential.iter().map(|c| c.name.clone());
        let identity = self
            .spec
            .encryption
            .iter()
            .flat_map(|e| e.identity_secret.iter().map(|c| c.name.clone()));
        credential.chain(identity).map(|n| ("secrets", n)).collect()
    }
}

impl References for ManagedCluster {
    fn references(&self) -> Vec<(&'static str, String)> {
        let tls = self
            .spec
            .etcd
            .iter()
            .flat_map(|e| e.tls.iter().map(|t| t.name.clone()));
        std::iter::once(self.spec.kubeconfig.name.clone())
            .chain(tls)
            .map(|n| ("secrets", n))
            .collect()
    }
}

impl References for ClusterRestore {
    fn references(&self) -> Vec<(&'static str, String)> {
        self.spec
            .resource_modifiers
            .iter()
            .flat_map(|m| {
                m.config_map_ref
                    .iter()
                    .map(|c| ("configmaps", c.name.clone()))
            })
            .collect()
    }
}

impl References for ClusterBackup {}
impl References for ClusterMigration {}
impl References for EtcdBackupConfig {}
impl References for EtcdRestore {}
impl References for ManagementBackup {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_every_secret_and_config_map_our_objects_read() {
        let location: StorageLocation = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "StorageLocation",
            "metadata": {"name": "main", "namespace": "p"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "b"},
                     "credential": {"name": "s3-creds", "key": "cloud"},
                     "encryption": {"recipients": [], "identitySecret": {"name": "age", "key": "k"}}}
        }))
        .unwrap();
        assert_eq!(
            location.references(),
            [
                ("secrets", "s3-creds".to_string()),
                ("secrets", "age".to_string())
            ]
        );
        let cluster: ManagedCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ManagedCluster",
            "metadata": {"name": "c1", "namespace": "p"},
            "spec": {"kubeconfig": {"name": "c1-kubeconfig", "key": "kubeconfig"},
                     "etcd": {"endpoints": ["https://127.0.0.1:2379"], "tls": {"name": "c1-etcd"}}}
        }))
        .unwrap();
        assert_eq!(
            cluster.references(),
            [
                ("secrets", "c1-kubeconfig".to_string()),
                ("secrets", "c1-etcd".to_string())
            ]
        );
        let restore: ClusterRestore = serde_json::from_value(serde_json::json!({
            "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ClusterRestore",
            "metadata": {"name": "r", "namespace": "p"},
            "spec": {"source": {"cluster": "c1", "clusterBackup": "nightly"},
                     "resourceModifiers": {"configMapRef": {"name": "rules"}}}
        }))
        .unwrap();
        assert_eq!(restore.references(), [("configmaps", "rules".to_string())]);
    }
}
