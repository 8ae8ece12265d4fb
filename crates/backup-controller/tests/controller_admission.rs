//! The admission webhook with real tokens: the API server asks the controller before it stores
//! a ClusterRestore or ClusterBackup, and the controller asks the API server whether the
//! *requesting user* holds `restore`, `restore-privileged` or `backup` on each ManagedCluster
//! the object acts on. The owner of c2 cannot restore into c1, cannot restore cluster-scoped
//! objects or RBAC into c2 without `restore-privileged`, can when the restore leaves them out,
//! and cannot widen an admitted restore afterwards; the controller's own updates (finalizers,
//! status) pass.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tests::controller::{
    ControllerProcess, Project, client_with_token, free_port, plural, service_account,
};

/// The label API servers since Kubernetes 1.21 put on every namespace; the local control plane
/// runs 1.20, so the test sets it as a newer server would (the webhook is scoped by it).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Creates `object` (one of ours) in `namespace` as `client`'s user: the API server's answer.
async fn create_as(client: &kube::Client, p: &Project, object: Value) -> kube::Result<()> {
    let api = ours(client, p, object["kind"].as_str().unwrap_or_default());
    let mut object = object;
    object["apiVersion"] = json!("backupfleet.dev/v1alpha1");
    let object: DynamicObject = serde_json::from_value(object).expect("a valid object");
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

/// The API server's refusal message, or a failure when it admitted the object.
fn refusal(result: kube::Result<()>) -> Result<String> {
    match result {
        Ok(()) => bail!("admitted, but should have been refused"),
        Err(kube::Error::Api(status)) => Ok(status.message),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn admission_checks_the_requesting_users_verbs_on_each_cluster() -> Result<()> {
    let p = Project::create("admission").await?;
    let namespaces: Api<Namespace> = Api::all(p.mgmt.clone());
    namespaces
        .patch(
            p.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {NAMESPACE_NAME_LABEL: p.name()}}})),
        )
        .await?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let url = format!("https://127.0.0.1:{port}");
    let controller = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "admission",
        &["--webhook-addr", &addr, "--webhook-register", &url],
    )
    .await?;
    let checked = judge_requests(&p).await;
    // The configuration outlives the process; without its webhook every later write of our
    // kinds in this namespace would be refused (failurePolicy: Fail).
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(p.mgmt.clone());
    let deleted = configurations
        .delete(
            &format!("backup-fleet-{}", p.name()),
            &DeleteParams::default(),
        )
        .await;
    checked.with_context(|| format!("controller log:\n{}", controller.log_text()))?;
    deleted.context("removing the test's ValidatingWebhookConfiguration")?;
    Ok(())
}

async fn judge_requests(p: &Project) -> Result<()> {
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    let owner_of_c2 = service_account(
        p,
        "c2-owner",
        json!([
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterrestores", "clusterbackups"],
             "verbs": ["create", "get", "list", "update", "patch"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["managedclusters"],
             "resourceNames": ["c2"], "verbs": ["restore", "backup"]},
        ]),
    )
    .await?;
    let user = format!("system:serviceaccount:{}:c2-owner", p.name());
    let owner = client_with_token(&owner_of_c2).await?;
    let restore = |name: &str, target: &str, filter: Value| {
        let mut spec = json!({"source": {"cluster": "c1", "backupName": "nightly-1"},
                              "targetClusters": [target]});
        spec.as_object_mut()
            .expect("an object")
            .extend(filter.as_object().expect("an object").clone());
        json!({"kind": "ClusterRestore", "metadata": {"name": name}, "spec": spec})
    };
    let unprivileged = json!({"includeClusterResources": false,
                              "excludedResources": ["*.rbac.authorization.k8s.io"]});

    // Another team's cluster: refused, naming the verb, the resource and the cluster.
    let into_c1 =
        refusal(create_as(&owner, p, restore("into-c1", "c1", unprivileged.clone())).await)?;
    let expected = format!(
        "User {user:?} cannot restore managedclusters.backupfleet.dev \"c1\" in the namespace {:?}",
        p.name()
    );
    ensure!(into_c1.contains(&expected), "refusal: {into_c1}");

    // Its own cluster, but the restore may bring cluster-scoped objects and RBAC: refused, with
    // how to leave them out.
    let everything = refusal(create_as(&owner, p, restore("everything", "c2", json!({}))).await)?;
    ensure!(
        everything.contains("cannot restore-privileged managedclusters.backupfleet.dev \"c2\"")
            && everything.contains("includeClusterResources: false")
            && everything.contains("rolebindings.rbac.authorization.k8s.io"),
        "refusal: {everything}"
    );
    let update = json!({"existingResourcePolicy": "update", "includeClusterResources": false,
                        "excludedResources": ["*.rbac.authorization.k8s.io"]});
    let overwrite = refusal(create_as(&owner, p, restore("overwrite", "c2", update)).await)?;
    ensure!(
        overwrite.contains("existingResourcePolicy: update"),
        "refusal: {overwrite}"
    );

    // Leaving them out explicitly: admitted, and the controller's own updates pass.
    create_as(&owner, p, restore("plain", "c2", unprivileged)).await?;
    p.wait_for(
        "ClusterRestore",
        "plain",
        Duration::from_secs(60),
        "the controller's finalizer and status",
        |o| {
            o["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
                && !o["status"].is_null()
        },
    )
    .await?;

    // Widening the admitted restore afterwards is judged like a new one.
    let widened = ours(&owner, p, "ClusterRestore")
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"targetClusters": ["c1"]}})),
        )
        .await
        .map(|_| ());
    let widened = refusal(widened)?;
    ensure!(
        widened.contains("cannot restore managedclusters.backupfleet.dev \"c1\""),
        "refusal: {widened}"
    );
    // Changing only labels asks for nothing new.
    ours(&owner, p, "ClusterRestore")
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"ticket": "42"}}})),
        )
        .await?;

    // A selector may pick any cluster of the project, including later ones: all are needed.
    let selected = json!({"kind": "ClusterBackup", "metadata": {"name": "prod"},
        "spec": {"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}});
    let by_selector = refusal(create_as(&owner, p, selected).await)?;
    ensure!(
        by_selector.contains("cannot backup managedclusters.backupfleet.dev (all of them"),
        "refusal: {by_selector}"
    );
    let named = json!({"kind": "ClusterBackup", "metadata": {"name": "c2-only"},
        "spec": {"clusters": {"names": ["c2"]}, "schedule": "0 2 * * *", "paused": true}});
    create_as(&owner, p, named).await?;
    Ok(())
}

/// Our `kind` in the project's namespace, as `client`'s user.
fn ours(client: &kube::Client, p: &Project, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "backupfleet.dev".into(),
        version: "v1alpha1".into(),
        api_version: "backupfleet.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural(kind),
    };
    Api::namespaced_with(client.clone(), p.name(), &resource)
}
