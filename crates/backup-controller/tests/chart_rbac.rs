//! The Helm chart against the real controller: its CRDs are exactly the generated ones, and its
//! RBAC, applied for real and used through a ServiceAccount token (TokenRequest), is enough for
//! a fleet backup, a restore and a management backup, and no more.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tests::controller::{Access, ControllerProcess, Project};
use tests::env::shared;
use tests::{TestNamespace, unique_name};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_backup-controller"))
}

#[test]
fn the_charts_crds_are_the_generated_ones() -> Result<()> {
    let dir = tests::helm::chart_dir().join("crds");
    let crds = backup_controller::api::crds();
    let mut expected = Vec::new();
    for crd in &crds {
        let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
        let shipped = std::fs::read_to_string(dir.join(&name))
            .with_context(|| format!("{name} missing from the chart: run `cargo xtask crds --out charts/backup-fleet/crds`"))?;
        ensure!(
            shipped == serde_yaml_ng::to_string(crd)?,
            "{name} in the chart differs from `backup-controller crds`: run `cargo xtask crds --out charts/backup-fleet/crds`"
        );
        expected.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    present.sort();
    expected.sort();
    ensure!(
        present == expected,
        "the chart ships CRDs we do not generate: {present:?}"
    );
    Ok(())
}

/// Applies one rendered object for real (server-side apply).
async fn apply(client: &Client, object: &Value, namespace: &str) -> Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_ascii_lowercase()),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match kind {
        "ClusterRole" | "ClusterRoleBinding" => Api::all_with(client.clone(), &resource),
        _ => Api::namespaced_with(client.clone(), namespace, &resource),
    };
    api.patch(
        name,
        &PatchParams::apply("chart-tests").force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// Whether the token's user may do `verb` on `resource` (group `group`, in `namespace`).
async fn allowed(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: namespace.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[tokio::test]
async fn the_charts_rbac_runs_a_backup_a_restore_and_a_management_backup_and_no_more() -> Result<()>
{
    let env = shared()?;
    let mgmt_state = env.management()?.clone();
    // The chart is installed into the project's namespace, so the Lease's Role and the
    // management namespace are that namespace, and the test's objects stay in it.
    let p = Project::create("chart-rbac", &backup_controller::api::crds()).await?;
    let release = unique_name("r", "rbac");
    let chart = tests::helm::render(&json!({}), &release, p.name())?
        .map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
    let objects = chart.objects()?;
    let mut account = String::new();
    let mut cluster_scoped = Vec::new();
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        if matches!(
            kind,
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
        ) {
            apply(&p.mgmt, object, p.name()).await?;
        }
        if kind == "ServiceAccount" {
            account = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .into();
        }
        if kind.starts_with("Cluster") {
            cluster_scoped.push(object.clone());
        }
    }
    ensure!(!account.is_empty(), "the chart made no ServiceAccount");

    // A token for the chart's ServiceAccount, as its pods would get.
    let token = Api::<ServiceAccount>::namespaced(p.mgmt.clone(), p.name())
        .create_token_request(
            &account,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            },
        )
        .await?
        .status
        .context("no token issued")?
        .token;
    let work = tempfile::tempdir()?;
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_json::to_string(&json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "chart",
            "clusters": [{"name": "mgmt", "cluster": {"server": mgmt_state.apiserver_url,
                "certificate-authority": mgmt_state.ca_file}}],
            "users": [{"name": "chart", "user": {"token": token}}],
            "contexts": [{"name": "chart", "context": {"cluster": "mgmt", "user": "chart"}}]
        }))?,
    )?;
    let access = Access {
        kubeconfig: kubeconfig.clone(),
        context: "chart".into(),
        lease_namespace: p.name().to_string(),
    };

    // Enough: a fleet backup, a restore into another cluster, a management backup.
    let c1 = env.client("c1").await?;
    let app = TestNamespace::create(&c1, "chart-app").await?;
    let mut settings = ConfigMap::default();
    settings.metadata.name = Some("settings".into());
    settings.data = Some([("k".to_string(), "v".to_string())].into());
    Api::<ConfigMap>::namespaced(c1.clone(), &app.name)
        .create(&PostParams::default(), &settings)
        .await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "once"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": [app.name]}}}),
    )
    .await?;
    let api_addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", tests::controller::free_port()?).parse()?;
    let controller = ControllerProcess::start_as(
        binary(),
        &p,
        "chart",
        &access,
        &["--api-addr", &api_addr.to_string()],
        &[],
    )
    .await?;
    p.wait_for(
        "ClusterBackup",
        "once",
        Duration::from_secs(90),
        "the backup completed",
        |b| b["status"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;
    let restored_ns = format!("{}-dr", app.name);
    p.apply(json!({"kind": "ClusterRestore", "metadata": {"name": "dr"},
        "spec": {"source": {"cluster": "c1", "clusterBackup": "once"}, "targetClusters": ["c2"],
                 "namespaceMapping": {app.name.clone(): restored_ns}}}))
        .await?;
    p.wait_for(
        "ClusterRestore",
        "dr",
        Duration::from_secs(90),
        "the restore completed",
        |r| r["status"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;
    p.apply(
        json!({"kind": "ManagementBackup", "metadata": {"name": "mgmt",
        "annotations": {"backupfleet.dev/run-now": "now"}}, "spec": {}}),
    )
    .await?;
    p.wait_for(
        "ManagementBackup",
        "mgmt",
        Duration::from_secs(90),
        "the management backup completed",
        |m| {
            m["status"]["lastBackups"][0]["backupPhase"] == "Completed"
                && m["status"]["lastRelease"].is_string()
        },
    )
    .await
    .with_context(|| controller.log_text())?;
    // The dashboard's API works under the chart's RBAC (TokenReview, SubjectAccessReview).
    let (code, body) = tests::controller::http_request(
        api_addr,
        "GET",
        &format!("/api/v1/namespaces/{}/clusterbackups", p.name()),
        Some(&token),
        None,
    )?;
    ensure!(
        code == 200 && String::from_utf8_lossy(&body).contains("\"once\""),
        "API under the chart's RBAC: {code} {}",
        String::from_utf8_lossy(&body)
    );
    let log = controller.log_text();
    ensure!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "the controller was refused something:\n{log}"
    );

    // And no more.
    let limited = {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &Default::default(),
        )
        .await?;
        Client::try_from(config)?
    };
    let ns = Some(p.name());
    for (verb, group, resource, namespace) in [
        ("get", "", "secrets", ns),
        ("watch", "", "secrets", None),
        ("patch", "backupfleet.dev", "clusterbackups", ns),
        ("create", "events.k8s.io", "events", ns),
        ("update", "coordination.k8s.io", "leases", ns),
    ] {
        ensure!(
            allowed(&limited, verb, group, resource, namespace).await?,
            "the chart must allow {verb} {resource}"
        );
    }
    for (verb, group, resource, namespace) in [
        ("create", "", "secrets", ns),
        ("update", "", "secrets", ns),
        ("delete", "", "secrets", ns),
        ("create", "", "configmaps", ns),
        ("delete", "", "namespaces", None),
        ("list", "", "pods", None),
        ("create", "apps", "deployments", ns),
        ("get", "", "nodes", None),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
        ),
        ("impersonate", "", "users", None),
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some("kube-system"),
        ),
        ("create", "", "serviceaccounts/token", ns),
    ] {
        ensure!(
            !allowed(&limited, verb, group, resource, namespace).await?,
            "the chart must not allow {verb} {group}/{resource} in {namespace:?}"
        );
    }

    drop(controller);
    for object in cluster_scoped {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let resource = ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: kind.clone(),
            plural: format!("{}s", kind.to_ascii_lowercase()),
        };
        let _ = Api::<DynamicObject>::all_with(p.mgmt.clone(), &resource)
            .delete(name, &Default::default())
            .await;
    }
    app.delete().await?;
    let c2 = env.client("c2").await?;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(c2)
        .delete(&restored_ns, &Default::default())
        .await;
    p.delete().await
}
