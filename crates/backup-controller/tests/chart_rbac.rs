//! The Helm chart against the real controller: its CRDs are exactly the generated ones, and its
//! RBAC, applied for real and used through a ServiceAccount token (TokenRequest), is enough for
//! a fleet backup, a restore and a management backup, and no more. No project's Secrets are
//! readable through it: a project lets the controller `get` its own with the RoleBinding of
//! `examples/project-onboarding.yaml`, and only `managementBackup.readProjectSecrets=true`
//! grants `get` on every Secret (for ManagementBackups); nothing ever lists or watches them.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use backup_storage::{BackupName, Identities};
use backup_velero::format::{ResourceList, gunzip_json};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tests::controller::{Access, ControllerProcess, Project, condition, has_condition, wait_until};
use tests::env::shared;
use tests::{TestNamespace, unique_name};

#[test]
fn the_charts_crds_are_the_generated_ones() -> Result<()> {
    let dir = tests::helm::chart_dir().join("crds");
    let crds = backup_api::crds();
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

#[test]
fn the_charts_webhook_sends_what_the_controller_registers() -> Result<()> {
    let chart = tests::helm::render(
        &json!({"controller": {"watchNamespace": "team-a"}}),
        "bf",
        "backup-fleet-system",
    )?
    .map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
    let objects = chart.objects()?;
    let shipped = objects
        .iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .context("the chart has no ValidatingWebhookConfiguration")?;
    let registered = serde_json::to_value(backup_controller::admission::register::configuration(
        "https://x",
        "PEM",
        Some("team-a"),
    ))?;
    for field in [
        "name",
        "rules",
        "namespaceSelector",
        "failurePolicy",
        "sideEffects",
        "admissionReviewVersions",
        "timeoutSeconds",
    ] {
        ensure!(
            shipped["webhooks"][0][field] == registered["webhooks"][0][field],
            "the chart's webhook {field} is {} but the controller registers {}",
            shipped["webhooks"][0][field],
            registered["webhooks"][0][field]
        );
    }
    Ok(())
}

/// The chart's opt-in alerts read only metrics the controller exports, under their exported
/// names (a renamed metric would silently never alert).
#[test]
fn the_charts_alerts_read_metrics_the_controller_exports() -> Result<()> {
    use backup_api::restore_drill::DrillPhase;
    use backup_controller::metrics::{BackupLabels, DrilledLabels, LocationLabels, Metrics};
    let off = tests::helm::render(&json!({}), "bf", "backup-fleet-system")?
        .map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
    ensure!(
        !off.objects()?.iter().any(|o| o["kind"] == "PrometheusRule"),
        "the rule is opt-in"
    );
    let chart = tests::helm::render(
        &json!({"metrics": {"prometheusRule": {"enabled": true}}}),
        "bf",
        "backup-fleet-system",
    )?
    .map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
    let objects = chart.objects()?;
    let rule = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .context("no PrometheusRule with metrics.prometheusRule.enabled")?;
    let metrics = Metrics::new();
    let now = jiff::Timestamp::now();
    let backup = BackupLabels {
        namespace: "p".into(),
        clusterbackup: "b".into(),
        cluster: "c".into(),
    };
    metrics.last_successful_backup(backup, now);
    let location = LocationLabels {
        namespace: "p".into(),
        name: "l".into(),
    };
    metrics.location_available(location, false);
    let drilled = DrilledLabels {
        namespace: "p".into(),
        cluster: "c".into(),
    };
    metrics.drill_finished(drilled, DrillPhase::Verified, Some(1.0), now);
    let exposition = metrics.encode()?;
    let rules = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .context("no rules")?;
    let alerts: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    ensure!(
        alerts
            == [
                "BackupFleetLastBackupTooOld",
                "BackupFleetNotProvenRestorable",
                "BackupFleetStorageLocationUnavailable",
                "BackupFleetRestoreDrillFailed"
            ],
        "{alerts:?}"
    );
    for rule in rules {
        let expr = rule["expr"].as_str().context("an expr")?;
        let names: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("backupfleet_"))
            .collect();
        ensure!(!names.is_empty(), "{expr} reads no metric of ours");
        for name in names {
            ensure!(
                exposition
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}{{"))
                        || l.starts_with(&format!("{name} "))),
                "{expr}: the controller exports no {name}:\n{exposition}"
            );
        }
        ensure!(
            rule["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| s.contains("{{ $labels.")),
            "{rule}"
        );
    }
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

/// Applies the chart's RBAC objects and ServiceAccount; returns the cluster-scoped ones (to
/// delete at the end).
async fn apply_rbac(client: &Client, objects: &[Value], namespace: &str) -> Result<Vec<Value>> {
    let mut cluster_scoped = Vec::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        if matches!(
            kind,
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
        ) {
            apply(client, object, namespace).await?;
        }
        if kind.starts_with("Cluster") {
            cluster_scoped.push(object.clone());
        }
    }
    Ok(cluster_scoped)
}

/// The rendered Deployment's container arguments.
fn deployment_args(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// `examples/project-onboarding.yaml` as project `namespace` applies it, for the chart's
/// ServiceAccount `account` of release namespace `release_ns` and its ClusterRole
/// `project_secrets` (the example names those of the default release).
fn onboarding(account: &str, release_ns: &str, project_secrets: &str) -> Result<Value> {
    let path = tests::helm::chart_dir().join("../../examples/project-onboarding.yaml");
    let mut consent: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path)?)?;
    ensure!(
        consent["kind"] == "RoleBinding"
            && consent["roleRef"]["kind"] == "ClusterRole"
            && consent["roleRef"]["name"] == "backup-fleet-project-secrets"
            && consent["subjects"]
                == json!([{"kind": "ServiceAccount", "name": "backup-fleet",
                           "namespace": "backup-fleet-system"}]),
        "examples/project-onboarding.yaml is not the consent this test grants: {consent}"
    );
    consent["roleRef"]["name"] = json!(project_secrets);
    consent["subjects"][0]["name"] = json!(account);
    consent["subjects"][0]["namespace"] = json!(release_ns);
    Ok(consent)
}

/// Whether `client`'s user may `get`, `list` and `watch` Secrets in `namespace` (every
/// namespace when `None`).
async fn secret_verbs(client: &Client, namespace: Option<&str>) -> Result<[bool; 3]> {
    Ok([
        allowed(client, "get", "", "secrets", namespace).await?,
        allowed(client, "list", "", "secrets", namespace).await?,
        allowed(client, "watch", "", "secrets", namespace).await?,
    ])
}

/// The text `process` logged after its first `from` bytes.
fn log_since(process: &ControllerProcess, from: usize) -> String {
    process
        .log_text()
        .get(from..)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_charts_rbac_runs_a_backup_a_restore_and_a_management_backup_and_no_more() -> Result<()>
{
    let env = shared()?;
    let mgmt_state = env.management()?.clone();
    // The chart is installed into the project's namespace, so the Lease's Role and the
    // management namespace are that namespace, and the test's objects stay in it.
    let p = Project::create("chart-rbac").await?;
    let release = unique_name("r", "rbac");
    let chart = tests::helm::render(&json!({}), &release, p.name())?
        .map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
    let objects = chart.objects()?;
    let mut cluster_scoped = apply_rbac(&p.mgmt, &objects, p.name()).await?;
    let account = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .and_then(|o| o["metadata"]["name"].as_str())
        .context("the chart made no ServiceAccount")?
        .to_string();
    let project_secrets = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .find(|name| name.ends_with("-project-secrets"))
        .context("the chart made no -project-secrets ClusterRole")?
        .to_string();
    ensure!(
        !deployment_args(&objects).contains(&"--management-backup-secrets".to_string()),
        "the default chart grants ManagementBackups"
    );

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
    let limited = {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &Default::default(),
        )
        .await?;
        Client::try_from(config)?
    };

    // No Secret of a project that has not consented: not this one yet, not another one, and
    // nothing lists or watches them anywhere.
    let other = TestNamespace::create(&p.mgmt, "chart-rbac-other").await?;
    for namespace in [Some(p.name()), Some(other.name.as_str()), None] {
        ensure!(
            secret_verbs(&limited, namespace).await? == [false; 3],
            "the chart alone lets the controller get, list or watch Secrets in {namespace:?}"
        );
    }

    // The project's objects before its consent: each Secret it names is refused, and the
    // conditions say what to create.
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
    let api_addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", tests::controller::free_port()?).parse()?;
    let mut controller = ControllerProcess::start_as(
        tests::controller_bin!(),
        &p,
        "chart",
        &access,
        &["--api-addr", &api_addr.to_string(), "--api-plain-http"],
        &[],
    )
    .await?;
    let refused = p
        .wait_for(
            "StorageLocation",
            "main",
            Duration::from_secs(60),
            "SecretsNotShared",
            |l| l["status"]["reason"] == "SecretsNotShared",
        )
        .await
        .with_context(|| controller.log_text())?;
    let message = refused["status"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("examples/project-onboarding.yaml")
            && message.contains("create rolebinding"),
        "the condition does not say what to create: {message}"
    );
    for cluster in ["c1", "c2"] {
        p.wait_for(
            "ManagedCluster",
            cluster,
            Duration::from_secs(60),
            "Reachable=False SecretsNotShared",
            |c| has_condition(c, "Reachable", "False", "SecretsNotShared"),
        )
        .await
        .with_context(|| controller.log_text())?;
    }

    // The project consents: `get` on its own Secrets, nothing more, nowhere else.
    apply(
        &p.mgmt,
        &onboarding(&account, p.name(), &project_secrets)?,
        p.name(),
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the consent to reach the authorizer",
        || allowed(&limited, "get", "", "secrets", Some(p.name())),
    )
    .await?;
    ensure!(
        secret_verbs(&limited, Some(p.name())).await? == [true, false, false],
        "consent is get only"
    );
    for namespace in [Some(other.name.as_str()), None] {
        ensure!(
            secret_verbs(&limited, namespace).await? == [false; 3],
            "one project's consent opened Secrets in {namespace:?}"
        );
    }
    let consented_at = controller.log_text().len();

    // Enough: a fleet backup, a restore into another cluster (the objects that were refused
    // look again when touched; otherwise at their next probe).
    let mut main = p.s3_location("main", true)?;
    main["metadata"]["labels"] = json!({"consent": "given"});
    p.apply(main).await?;
    p.apply(p.cluster("c1", "c1", json!({"consent": "given"})))
        .await?;
    p.apply(p.cluster("c2", "c2", json!({"consent": "given"})))
        .await?;
    p.wait_for(
        "StorageLocation",
        "main",
        Duration::from_secs(60),
        "Available once the project consented",
        |l| l["status"]["phase"] == "Available",
    )
    .await
    .with_context(|| controller.log_text())?;
    for cluster in ["c1", "c2"] {
        p.wait_for(
            "ManagedCluster",
            cluster,
            Duration::from_secs(60),
            "Reachable once the project consented",
            |c| condition(c, "Reachable").is_some_and(|r| r["status"] == "True"),
        )
        .await
        .with_context(|| controller.log_text())?;
    }
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "once"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": [app.name]}}}),
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

    // A ManagementBackup, to a location encrypting to the platform's key: refused until the
    // platform grants it every project's Secrets.
    let key = Identities::generate();
    p.secret("age-key", "identity", key.to_identity_file().as_bytes())
        .await?;
    let mut sealed = p.s3_location("sealed", false)?;
    sealed["spec"]["encryption"] = json!({
        "recipients": [key.recipients()[0].to_string()],
        "identitySecret": {"name": "age-key", "key": "identity"}
    });
    p.apply(sealed).await?;
    p.apply(
        json!({"kind": "ManagementBackup", "metadata": {"name": "mgmt",
        "annotations": {"backupfleet.dev/run-now": "now"}}, "spec": {"storageLocation": "sealed"}}),
    )
    .await?;
    p.wait_for(
        "ManagementBackup",
        "mgmt",
        Duration::from_secs(60),
        "SecretsNotGranted under the default chart",
        |m| has_condition(m, "Ready", "False", "SecretsNotGranted"),
    )
    .await
    .with_context(|| controller.log_text())?;
    let first_log = log_since(&controller, consented_at);
    controller.stop()?;

    // The chart with managementBackup.readProjectSecrets=true: get (only) on every Secret, and
    // the controller started with the flag the Deployment passes.
    let granted = tests::helm::render(
        &json!({"managementBackup": {"readProjectSecrets": true}}),
        &release,
        p.name(),
    )?
    .map_err(|e| anyhow::anyhow!("rendering: {e}"))?
    .objects()?;
    for object in apply_rbac(&p.mgmt, &granted, p.name()).await? {
        if !cluster_scoped.contains(&object) {
            cluster_scoped.push(object);
        }
    }
    let flag = "--management-backup-secrets";
    ensure!(
        deployment_args(&granted).iter().any(|a| a == flag),
        "{:?}",
        deployment_args(&granted)
    );
    wait_until(
        Duration::from_secs(10),
        "the grant to reach the authorizer",
        || allowed(&limited, "get", "", "secrets", Some(&other.name)),
    )
    .await?;
    for namespace in [Some(p.name()), Some(other.name.as_str()), None] {
        ensure!(
            secret_verbs(&limited, namespace).await? == [true, false, false],
            "the ManagementBackup grant is get only (in {namespace:?})"
        );
    }
    let controller = ControllerProcess::start_as(
        tests::controller_bin!(),
        &p,
        "granted",
        &access,
        &[flag],
        &[],
    )
    .await
    .with_context(|| first_log.clone())?;
    let done = p
        .wait_for(
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
    // It holds the project's Secrets, read by name through the grant.
    let run = done["status"]["lastBackups"][0]["backupName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let repo = p.repository("management")?.with_identities(key.clone());
    let mut list_bytes = Vec::new();
    repo.download_artifact_to(
        backup_core::BackupKind::Resources,
        &BackupName::new(&run)?,
        &format!("{run}-resource-list.json.gz").parse()?,
        &mut list_bytes,
    )
    .await?;
    let list: ResourceList = gunzip_json(&list_bytes)?;
    let secrets = list.0.get("v1/Secret").cloned().unwrap_or_default();
    for name in ["s3-creds", "c1-kubeconfig", "c2-kubeconfig", "age-key"] {
        ensure!(
            secrets.contains(&format!("{}/{name}", p.name())),
            "Secret {name} missing from the management backup: {:?}",
            list.0
        );
    }
    for log in [first_log, controller.log_text()] {
        ensure!(
            !log.contains("forbidden") && !log.contains("Forbidden"),
            "the controller was refused something:\n{log}"
        );
    }

    // And no more.
    let ns = Some(p.name());
    for (verb, group, resource, namespace) in [
        ("patch", "backupfleet.dev", "clusterbackups", ns),
        ("create", "events.k8s.io", "events", ns),
        ("update", "coordination.k8s.io", "leases", ns),
        // The dashboard writes as the signed-in person.
        ("impersonate", "", "users", None),
        ("impersonate", "", "groups", None),
        ("impersonate", "", "serviceaccounts", None),
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
        ("list", "", "secrets", None),
        ("watch", "", "secrets", None),
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
        ("create", "rbac.authorization.k8s.io", "rolebindings", ns),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
        ),
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
    other.delete().await?;
    let c2 = env.client("c2").await?;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(c2)
        .delete(&restored_ns, &Default::default())
        .await;
    p.delete().await
}
