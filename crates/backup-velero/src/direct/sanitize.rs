//! What happens to a backed-up object before it is created again: what is skipped, and which
//! fields are reset so the apiserver accepts it as new.
//!
//! Skipped (they are recreated by the cluster itself, so restoring them collides or goes stale):
//! - everything Velero never restores (`backup_core::velero_data::is_non_restorable`);
//! - the `kube-root-ca.crt` ConfigMap (published into every namespace by the controller-manager);
//! - the `default` ServiceAccount (created in every namespace by the controller-manager);
//! - service-account token Secrets (`kubernetes.io/service-account-token` naming an account):
//!   the token controller issues fresh ones for the restored accounts;
//! - APIServices labelled `kube-aggregator.kubernetes.io/automanaged` (managed by the apiserver);
//! - objects whose controller owner is in the same backup (pods of a ReplicaSet, ReplicaSets of
//!   a Deployment, ...): the restored owner recreates them (decided in `restore`, which knows the
//!   backup's content).
//!
//! Reset: `uid`, `resourceVersion`, `generation`, `creationTimestamp`, `deletionTimestamp`,
//! `deletionGracePeriodSeconds`, `selfLink`, `ownerReferences`, `managedFields`; `status` unless
//! asked for; Service `clusterIP(s)` (unless headless), `healthCheckNodePort` and node ports
//! (unless preserved); a Pod's `nodeName` and its service-account token volumes; a PV's claim
//! uid. Added: labels `velero.io/backup-name` and `velero.io/restore-name`.

use std::collections::BTreeMap;

use backup_core::GroupResource;
use backup_core::velero_data::is_non_restorable;
use serde_json::{Map, Value};

/// Label naming the backup an object was restored from.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Label naming the restore that created an object.
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";

const RESET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "ownerReferences",
    "managedFields",
];

/// Why an object is not restored, or `None` to restore it.
pub fn skip_reason(gr: &GroupResource, obj: &Value) -> Option<&'static str> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match gr.to_string().as_str() {
        _ if is_non_restorable(gr) => Some("this resource is never restored"),
        "configmaps" if name == "kube-root-ca.crt" => {
            Some("published by the controller-manager in every namespace")
        }
        "serviceaccounts" if name == "default" => {
            Some("created by the controller-manager in every namespace")
        }
        "secrets"
            if obj["type"] == "kubernetes.io/service-account-token"
                && obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                    .is_string() =>
        {
            Some("service-account tokens are issued again by the token controller")
        }
        "apiservices.apiregistration.k8s.io"
            if obj["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"]
                .is_string() =>
        {
            Some("managed by the apiserver")
        }
        _ => None,
    }
}

/// How to prepare objects of one restore.
#[derive(Debug, Clone)]
pub struct PrepareOptions<'a> {
    /// Backup name, for the label.
    pub backup_name: &'a str,
    /// Restore name, for the label.
    pub restore_name: &'a str,
    /// Source namespace → target namespace.
    pub namespace_mapping: &'a BTreeMap<String, String>,
    /// Keep `status`.
    pub keep_status: bool,
    /// Keep Service node ports.
    pub preserve_node_ports: bool,
}

impl PrepareOptions<'_> {
    fn map<'s>(&'s self, ns: &'s str) -> &'s str {
        self.namespace_mapping.get(ns).map_or(ns, String::as_str)
    }
}

fn remove_path(obj: &mut Value, path: &[&str]) {
    let (last, parents) = match path.split_last() {
        Some(x) => x,
        None => return,
    };
    let mut cur = obj;
    for p in parents {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(*last);
    }
}

/// Resets an object for creation in the target cluster (see the module docs).
pub fn prepare(mut obj: Value, gr: &GroupResource, opts: &PrepareOptions<'_>) -> Value {
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Map::new());
    }
    let meta = &mut obj["metadata"];
    if let Some(m) = meta.as_object_mut() {
        for key in RESET_METADATA {
            m.remove(*key);
        }
    }
    if let Some(ns) = meta["namespace"].as_str().map(str::to_owned) {
        meta["namespace"] = Value::String(opts.map(&ns).to_string());
    }
    if !meta["labels"].is_object() {
        meta["labels"] = Value::Object(Map::new());
    }
    meta["labels"][BACKUP_NAME_LABEL] = opts.backup_name.into();
    meta["labels"][RESTORE_NAME_LABEL] = opts.restore_name.into();
    if !opts.keep_status {
        remove_path(&mut obj, &["status"]);
    }
    match gr.to_string().as_str() {
        "namespaces" => {
            if let Some(name) = obj["metadata"]["name"].as_str().map(str::to_owned) {
                obj["metadata"]["name"] = Value::String(opts.map(&name).to_string());
            }
        }
        "services" => reset_service(&mut obj, opts.preserve_node_ports),
        "pods" => reset_pod(&mut obj),
        "persistentvolumes" => {
            remove_path(&mut obj, &["spec", "claimRef", "uid"]);
            remove_path(&mut obj, &["spec", "claimRef", "resourceVersion"]);
            if let Some(ns) = obj["spec"]["claimRef"]["namespace"]
                .as_str()
                .map(str::to_owned)
            {
                obj["spec"]["claimRef"]["namespace"] = Value::String(opts.map(&ns).to_string());
            }
        }
        "persistentvolumeclaims" => {
            for a in [
                "pv.kubernetes.io/bind-completed",
                "pv.kubernetes.io/bound-by-controller",
            ] {
                remove_path(&mut obj, &["metadata", "annotations", a]);
            }
        }
        _ => {}
    }
    obj
}

fn reset_service(obj: &mut Value, preserve_node_ports: bool) {
    if obj["spec"]["clusterIP"] != "None" {
        remove_path(obj, &["spec", "clusterIP"]);
        remove_path(obj, &["spec", "clusterIPs"]);
    }
    remove_path(obj, &["spec", "healthCheckNodePort"]);
    if !preserve_node_ports && let Some(ports) = obj["spec"]["ports"].as_array_mut() {
        for port in ports {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
}

fn reset_pod(obj: &mut Value) {
    remove_path(obj, &["spec", "nodeName"]);
    let account = obj["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let prefix = format!("{account}-token-");
    let mut dropped: Vec<String> = Vec::new();
    if let Some(volumes) = obj["spec"]["volumes"].as_array_mut() {
        volumes.retain(|v| {
            let secret = v["secret"]["secretName"].as_str().unwrap_or_default();
            let token = secret.starts_with(&prefix);
            if token && let Some(name) = v["name"].as_str() {
                dropped.push(name.to_string());
            }
            !token
        });
    }
    for list in ["containers", "initContainers"] {
        if let Some(containers) = obj["spec"][list].as_array_mut() {
            for c in containers {
                if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                    mounts.retain(|m| {
                        !dropped
                            .iter()
                            .any(|d| m["name"].as_str() == Some(d.as_str()))
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(mapping: &BTreeMap<String, String>) -> PrepareOptions<'_> {
        PrepareOptions {
            backup_name: "b1",
            restore_name: "r1",
            namespace_mapping: mapping,
            keep_status: false,
            preserve_node_ports: false,
        }
    }

    #[test]
    fn metadata_is_reset_labelled_and_mapped() {
        let mapping = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "a", "uid": "u", "resourceVersion": "9",
                "creationTimestamp": "t", "managedFields": [], "ownerReferences": [{}],
                "labels": {"keep": "me"}},
            "data": {"k": "v"}, "status": {"s": 1}
        });
        let out = prepare(obj, &GroupResource::parse("configmaps"), &opts(&mapping));
        let meta = out["metadata"].as_object().unwrap();
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "ownerReferences",
        ] {
            assert!(!meta.contains_key(key), "{key}");
        }
        assert_eq!(out["metadata"]["namespace"], "b");
        assert_eq!(out["metadata"]["labels"]["keep"], "me");
        assert_eq!(out["metadata"]["labels"][BACKUP_NAME_LABEL], "b1");
        assert_eq!(out["metadata"]["labels"][RESTORE_NAME_LABEL], "r1");
        assert_eq!(out["data"]["k"], "v");
        assert!(out.get("status").is_none());
        let ns = prepare(
            json!({"metadata": {"name": "a"}}),
            &GroupResource::parse("namespaces"),
            &opts(&mapping),
        );
        assert_eq!(ns["metadata"]["name"], "b");
    }

    #[test]
    fn services_lose_allocated_addresses_but_headless_stays_headless() {
        let m = BTreeMap::new();
        let svc = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let out = prepare(svc, &GroupResource::parse("services"), &opts(&m));
        assert!(out["spec"].get("clusterIP").is_none());
        assert!(out["spec"].get("clusterIPs").is_none());
        assert!(out["spec"]["ports"][0].get("nodePort").is_none());
        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        let out = prepare(headless, &GroupResource::parse("services"), &opts(&m));
        assert_eq!(out["spec"]["clusterIP"], "None");
    }

    #[test]
    fn pods_lose_node_and_token_volumes() {
        let m = BTreeMap::new();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1",
            "volumes": [{"name": "default-token-abcde", "secret": {"secretName": "default-token-abcde"}},
                        {"name": "data", "emptyDir": {}}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "default-token-abcde"}, {"name": "data"}]}]}});
        let out = prepare(pod, &GroupResource::parse("pods"), &opts(&m));
        assert!(out["spec"].get("nodeName").is_none());
        assert_eq!(out["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "data"}])
        );
    }

    #[test]
    fn auto_generated_objects_are_skipped() {
        let gr = GroupResource::parse;
        assert!(
            skip_reason(
                &gr("configmaps"),
                &json!({"metadata": {"name": "kube-root-ca.crt"}})
            )
            .is_some()
        );
        assert!(skip_reason(&gr("configmaps"), &json!({"metadata": {"name": "app"}})).is_none());
        assert!(
            skip_reason(
                &gr("serviceaccounts"),
                &json!({"metadata": {"name": "default"}})
            )
            .is_some()
        );
        let token = json!({"type": "kubernetes.io/service-account-token",
            "metadata": {"name": "default-token-x", "annotations": {"kubernetes.io/service-account.name": "default"}}});
        assert!(skip_reason(&gr("secrets"), &token).is_some());
        assert!(
            skip_reason(
                &gr("secrets"),
                &json!({"type": "Opaque", "metadata": {"name": "s"}})
            )
            .is_none()
        );
        assert!(skip_reason(&gr("nodes"), &json!({"metadata": {"name": "n"}})).is_some());
    }
}
