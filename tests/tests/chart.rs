//! The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk): every value
//! combination users reach for renders, lints clean and keeps the security settings; bad values
//! fail naming the value; and the local control plane's apiserver accepts every rendered object
//! (server-side dry-run). That the chart's RBAC is enough, and not too much, is proven with the
//! real controller in `crates/backup-controller/tests/chart_rbac.rs`.

use anyhow::{Context, Result, ensure};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client};
use serde_json::{Value, json};
use tests::helm::{Rendered, render};
use tests::{TestNamespace, shared};

fn rendered(values: Value, namespace: &str) -> Result<Rendered> {
    render(&values, "bf", namespace)?.map_err(|e| anyhow::anyhow!("Helm refused {values}: {e}"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The ClusterRoles a ClusterRoleBinding binds (cluster-wide rights).
fn bound_cluster_roles(objects: &[Value]) -> Vec<&Value> {
    let bound: Vec<&Value> = of_kind(objects, "ClusterRoleBinding")
        .into_iter()
        .map(|b| &b["roleRef"]["name"])
        .collect();
    of_kind(objects, "ClusterRole")
        .into_iter()
        .filter(|r| bound.contains(&&r["metadata"]["name"]))
        .collect()
}

/// Whether `role` has a rule on Secrets.
fn reads_secrets(role: &Value) -> bool {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["resources"].as_array().into_iter().flatten())
        .any(|r| r == "secrets")
}

/// The default install's webhook: a certificate made for the Service and trusted by the
/// configuration, served by every replica, failing closed.
/// The impersonation rules of the controller's own ClusterRole.
fn impersonation(roles: &[&Value]) -> Value {
    let own = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "bf-backup-fleet")
        .expect("the controller's ClusterRole");
    own["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule["verbs"] == json!(["impersonate"]))
        .cloned()
        .collect()
}

fn check_webhook(objects: &[Value], args: &[&str]) -> Result<()> {
    let webhook = of_kind(objects, "ValidatingWebhookConfiguration")
        .first()
        .copied()
        .context("no ValidatingWebhookConfiguration")?;
    let hook = &webhook["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(
        hook["clientConfig"]["service"],
        json!({"name": "bf-backup-fleet", "namespace": "backup-fleet-system",
               "path": "/validate", "port": 9443})
    );
    let secret = of_kind(objects, "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "bf-backup-fleet-webhook")
        .context("no webhook certificate Secret")?;
    assert_eq!(hook["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    let pem = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        secret["data"]["tls.crt"].as_str().unwrap_or_default(),
    )?;
    assert!(String::from_utf8(pem)?.starts_with("-----BEGIN CERTIFICATE-----"));
    for flag in [
        "--webhook-addr=0.0.0.0:9443",
        "--webhook-cert-file=/var/run/backup-fleet/webhook/tls.crt",
        "--webhook-key-file=/var/run/backup-fleet/webhook/tls.key",
        "--webhook-ca-file=/var/run/backup-fleet/webhook/ca.crt",
    ] {
        assert!(args.contains(&flag), "{args:?}");
    }
    Ok(())
}

/// The project roles: viewers read, editors back up and restore without privilege, owners
/// also manage locations and clusters and restore privileged objects; each aggregated into
/// Kubernetes' role of the same standing.
fn check_project_roles(roles: &[&Value]) -> Result<()> {
    let role = |suffix: &str| {
        roles
            .iter()
            .find(|r| r["metadata"]["name"] == format!("bf-backup-fleet-{suffix}"))
            .copied()
            .with_context(|| format!("no {suffix} ClusterRole"))
    };
    let verbs_on_clusters = |r: &Value| -> Vec<String> {
        r["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|rule| rule["resources"] == json!(["managedclusters"]))
            .flat_map(|rule| rule["verbs"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    for (suffix, aggregate, cluster_verbs) in [
        ("viewer", "view", vec![]),
        ("editor", "edit", vec!["backup", "restore"]),
        ("owner", "admin", vec!["restore-privileged"]),
    ] {
        let r = role(suffix)?;
        let label = format!("rbac.authorization.k8s.io/aggregate-to-{aggregate}");
        assert_eq!(r["metadata"]["labels"][&label], "true", "{suffix}");
        assert_eq!(verbs_on_clusters(r), cluster_verbs, "{suffix}");
    }
    Ok(())
}

/// The value combinations users reach for.
fn combinations() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "metrics ServiceMonitor on, impersonation narrowed",
            json!({"metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
                   "api": {"impersonate": {"users": ["alice"], "groups": ["team-a", "team-b"],
                                           "extras": []}}}),
        ),
        (
            "API off, one replica, no leader election, NetworkPolicy on, one project",
            json!({"api": {"enabled": false},
                   "replicaCount": 1, "leaderElection": {"enabled": false},
                   "podDisruptionBudget": {"enabled": false},
                   "networkPolicy": {"enabled": true},
                   "controller": {"watchNamespace": "project-a", "release": "v1.2.0+build_7"}}),
        ),
        (
            "webhook certificate from cert-manager's Secret, no project roles",
            json!({"webhook": {"existingSecret": "bf-webhook-tls"}, "rbac": {"userRoles": false},
                   "api": {"tls": {"existingSecret": "bf-api-tls"}, "audience": "backup-fleet"}}),
        ),
        (
            "ManagementBackup grant, file root, no denied ranges, identity lent",
            json!({"managementBackup": {"readProjectSecrets": true},
                   "controller": {"fileRoot": "/var/lib/backups", "denyCIDRs": [],
                                  "lendIdentityTo": ["platform", "ops"]}}),
        ),
    ]
}

#[test]
fn every_combination_renders_lints_clean_and_stays_locked_down() -> Result<()> {
    for (name, values) in combinations() {
        let chart = rendered(values.clone(), "backup-fleet-system")?;
        ensure!(
            chart.lint_problems().is_empty(),
            "{name}: lint: {:?}",
            chart.lint_problems()
        );
        let objects = chart.objects()?;
        let deployment = of_kind(&objects, "Deployment")
            .first()
            .copied()
            .with_context(|| format!("{name}: no Deployment"))?
            .clone();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(container["resources"]["requests"].is_object(), "{name}");
        let args: Vec<&str> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args[0], "run");
        assert!(args.contains(&"--gc-interval=1h"), "{name}: {args:?}");
        // The ClusterRoles: nothing wildcarded; Secrets only in the one projects bind, and
        // only `get` (by name: nothing lists or watches them).
        let roles = of_kind(&objects, "ClusterRole");
        let project_roles = values["rbac"]["userRoles"] != false;
        assert_eq!(roles.len(), if project_roles { 5 } else { 2 }, "{name}");
        for rule in roles
            .iter()
            .flat_map(|r| r["rules"].as_array().into_iter().flatten())
        {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !rule[field]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v.as_str().is_some_and(|s| s.contains('*'))),
                    "{name}: wildcard in {rule}"
                );
            }
        }
        let project_secrets = roles
            .iter()
            .find(|r| r["metadata"]["name"] == "bf-backup-fleet-project-secrets")
            .with_context(|| format!("{name}: no -project-secrets ClusterRole"))?;
        assert_eq!(
            project_secrets["rules"],
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
            "{name}"
        );
        assert!(
            roles
                .iter()
                .filter(|r| r["metadata"]["name"] != project_secrets["metadata"]["name"])
                .all(|r| !reads_secrets(r)),
            "{name}: Secrets in the controller's own ClusterRole"
        );
        let grant = args.contains(&"--management-backup-secrets");
        let secrets_bound = bound_cluster_roles(&objects).into_iter().any(reads_secrets);
        assert_eq!(
            secrets_bound, grant,
            "{name}: Secrets are bound cluster-wide exactly with managementBackup.readProjectSecrets"
        );
        assert!(chart.notes().contains("StorageLocation"), "{name}");
        assert_eq!(
            chart.crds.len(),
            backup_api::crds().len(),
            "{name}: the CRDs ship with the chart"
        );

        match name {
            "defaults" => {
                assert_eq!(deployment["spec"]["replicas"], 2);
                assert!(args.contains(&"--api-addr=0.0.0.0:8443"), "{args:?}");
                // HTTPS, with a certificate the chart made (self-signed, kept).
                assert!(
                    args.contains(&"--api-tls-cert-file=/var/run/backup-fleet/api-tls/tls.crt")
                        && !args.iter().any(|a| a.starts_with("--api-plain-http")),
                    "{args:?}"
                );
                let tls = of_kind(&objects, "Secret")
                    .into_iter()
                    .find(|s| s["metadata"]["name"] == "bf-backup-fleet-api-tls")
                    .context("no dashboard certificate Secret")?;
                assert_eq!(tls["type"], "kubernetes.io/tls");
                assert!(
                    tls["data"]["tls.key"]
                        .as_str()
                        .is_some_and(|k| !k.is_empty())
                );
                assert!(
                    args.iter().any(|a| a.starts_with("--session-key-file=")),
                    "{args:?}"
                );
                let key = of_kind(&objects, "Secret")
                    .into_iter()
                    .find(|s| s["metadata"]["name"] == "bf-backup-fleet-session")
                    .context("no session key Secret")?;
                assert!(
                    key["data"]["key"].as_str().is_some_and(|k| k.len() >= 44),
                    "{key}"
                );
                let service = of_kind(&objects, "Service")[0];
                assert_eq!(service["spec"]["ports"][1]["name"], "api");
                assert!(chart.notes().contains("/ui"));
                assert!(args.contains(&"--release=0.1.0"), "{args:?}");
                assert!(!args.iter().any(|a| a.starts_with("--no-leader")));
                assert_eq!(of_kind(&objects, "PodDisruptionBudget").len(), 1);
                assert_eq!(of_kind(&objects, "Role").len(), 1, "the Lease's Role");
                assert!(of_kind(&objects, "ServiceMonitor").is_empty());
                assert!(of_kind(&objects, "NetworkPolicy").is_empty());
                // Tenancy: loopback denied, no file root, no identity lent, no Secrets.
                assert!(
                    args.contains(&"--deny-cidrs=127.0.0.0/8,::1/128"),
                    "{args:?}"
                );
                for absent in [
                    "--file-root",
                    "--lend-identity-to",
                    "--management-backup-secrets",
                ] {
                    assert!(!args.iter().any(|a| a.starts_with(absent)), "{args:?}");
                }
                assert_eq!(of_kind(&objects, "ClusterRoleBinding").len(), 1);
                check_webhook(&objects, &args)?;
                check_project_roles(&roles)?;
                // The dashboard writes as the person: any user and group by default, their
                // uid, and the extra keys Kubernetes' own tokens carry.
                assert_eq!(
                    impersonation(&roles),
                    json!([
                        {"apiGroups": [""], "resources": ["users", "serviceaccounts"],
                         "verbs": ["impersonate"]},
                        {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"]},
                        {"apiGroups": ["authentication.k8s.io"], "verbs": ["impersonate"],
                         "resources": ["uids",
                            "userextras/authentication.kubernetes.io/pod-name",
                            "userextras/authentication.kubernetes.io/pod-uid",
                            "userextras/authentication.kubernetes.io/credential-id",
                            "userextras/authentication.kubernetes.io/node-name",
                            "userextras/authentication.kubernetes.io/node-uid"]},
                    ])
                );
                let notes = chart.notes();
                assert!(
                    notes.contains("--clusterrole=bf-backup-fleet-project-secrets")
                        && notes.contains("--serviceaccount=backup-fleet-system:bf-backup-fleet"),
                    "{notes}"
                );
            }
            "ManagementBackup grant, file root, no denied ranges, identity lent" => {
                assert!(args.contains(&"--management-backup-secrets"), "{args:?}");
                assert!(args.contains(&"--file-root=/var/lib/backups"), "{args:?}");
                assert!(
                    args.contains(&"--lend-identity-to=platform,ops"),
                    "{args:?}"
                );
                assert!(
                    !args.iter().any(|a| a.starts_with("--deny-cidrs")),
                    "{args:?}"
                );
                let binding = of_kind(&objects, "ClusterRoleBinding")
                    .into_iter()
                    .find(|b| b["roleRef"]["name"] == "bf-backup-fleet-project-secrets")
                    .context("no ClusterRoleBinding of the -project-secrets ClusterRole")?;
                assert_eq!(
                    binding["subjects"],
                    json!([{"kind": "ServiceAccount", "name": "bf-backup-fleet",
                            "namespace": "backup-fleet-system"}])
                );
                assert!(chart.notes().contains("encrypt to an age recipient"));
            }
            "webhook certificate from cert-manager's Secret, no project roles" => {
                let webhook = of_kind(&objects, "ValidatingWebhookConfiguration")[0];
                assert_eq!(
                    webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from-secret"],
                    "backup-fleet-system/bf-webhook-tls"
                );
                assert!(webhook["webhooks"][0]["clientConfig"]["caBundle"].is_null());
                for made in ["bf-backup-fleet-webhook", "bf-backup-fleet-api-tls"] {
                    assert!(
                        !of_kind(&objects, "Secret")
                            .iter()
                            .any(|s| s["metadata"]["name"] == made),
                        "the chart makes no certificate when one is brought"
                    );
                }
                assert!(args.contains(&"--api-audience=backup-fleet"), "{args:?}");
                let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
                assert!(
                    volumes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["secret"]["secretName"] == "bf-webhook-tls"),
                    "{volumes}"
                );
                assert!(
                    volumes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["secret"]["secretName"] == "bf-api-tls"),
                    "{volumes}"
                );
            }
            "metrics ServiceMonitor on, impersonation narrowed" => {
                assert_eq!(
                    impersonation(&roles),
                    json!([
                        {"apiGroups": [""], "resources": ["users", "serviceaccounts"],
                         "verbs": ["impersonate"], "resourceNames": ["alice"]},
                        {"apiGroups": [""], "resources": ["groups"],
                         "verbs": ["impersonate"], "resourceNames": ["team-a", "team-b"]},
                        {"apiGroups": ["authentication.k8s.io"], "resources": ["uids"],
                         "verbs": ["impersonate"]},
                    ])
                );
                let monitor = of_kind(&objects, "ServiceMonitor")[0];
                assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
                assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
            }
            _ => {
                assert!(
                    !args.iter().any(|a| a.starts_with("--api-addr")),
                    "{args:?}"
                );
                let service = of_kind(&objects, "Service")[0];
                let ports: Vec<&Value> = service["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| &p["name"])
                    .collect();
                assert_eq!(ports, [&json!("metrics"), &json!("webhook")]);
                let webhook = of_kind(&objects, "ValidatingWebhookConfiguration")[0];
                assert_eq!(
                    webhook["webhooks"][0]["namespaceSelector"],
                    json!({"matchLabels": {"kubernetes.io/metadata.name": "project-a"}}),
                    "a one-project controller judges that project only"
                );
                let policy = of_kind(&objects, "NetworkPolicy")[0];
                assert!(
                    policy["spec"]["ingress"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|rule| rule["ports"][0]["port"] == "webhook" && rule["from"].is_null()),
                    "the API server reaches the webhook from anywhere: {policy}"
                );
                assert!(chart.notes().contains("api.enabled=false"));
                assert_eq!(
                    impersonation(&roles),
                    json!([]),
                    "no dashboard, no impersonation"
                );
                assert_eq!(deployment["spec"]["replicas"], 1);
                assert!(args.contains(&"--no-leader-election"), "{args:?}");
                assert!(args.contains(&"--namespace=project-a"), "{args:?}");
                assert!(args.contains(&"--release=v1.2.0+build_7"), "{args:?}");
                assert!(of_kind(&objects, "Role").is_empty());
                assert!(of_kind(&objects, "PodDisruptionBudget").is_empty());
                assert_eq!(of_kind(&objects, "NetworkPolicy").len(), 1);
            }
        }
    }
    Ok(())
}

#[test]
fn cert_manager_issues_the_dashboards_certificate_when_asked() -> Result<()> {
    let values = json!({"api": {"tls": {"certManager": {"issuerRef":
        {"name": "letsencrypt", "kind": "ClusterIssuer"}}, "dnsNames": ["backups.example.com"]}}});
    let objects = rendered(values, "backup-fleet-system")?.objects()?;
    let certificate = of_kind(&objects, "Certificate")
        .first()
        .copied()
        .context("no cert-manager Certificate")?
        .clone();
    assert_eq!(certificate["spec"]["secretName"], "bf-backup-fleet-api-tls");
    assert_eq!(certificate["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(
        certificate["spec"]["dnsNames"],
        json!([
            "backups.example.com",
            "bf-backup-fleet.backup-fleet-system.svc"
        ])
    );
    assert!(
        !of_kind(&objects, "Secret")
            .iter()
            .any(|s| s["metadata"]["name"] == "bf-backup-fleet-api-tls"),
        "cert-manager writes the Secret, not the chart"
    );
    Ok(())
}

#[test]
fn bad_values_fail_rendering_naming_the_value() -> Result<()> {
    for (values, named) in [
        (json!({"replicaCount": 0}), "replicaCount"),
        (
            json!({"image": {"repository": "Registry.example/Backup Controller"}}),
            "image/repository",
        ),
        (json!({"image": {"tag": "v1:latest"}}), "image/tag"),
        (
            json!({"controller": {"orphanGrace": "a day"}}),
            "controller/orphanGrace",
        ),
        (
            json!({"controller": {"gcInterval": "hourly"}}),
            "controller/gcInterval",
        ),
        (json!({"replicas": 3}), "replicas"),
        (
            json!({"controller": {"denyCIDRs": ["10.0.0.0"]}}),
            "controller/denyCIDRs",
        ),
        (
            json!({"controller": {"fileRoot": "backups"}}),
            "controller/fileRoot",
        ),
        (
            json!({"managementBackup": {"readProjectSecrets": "yes"}}),
            "managementBackup/readProjectSecrets",
        ),
        (
            json!({"leaderElection": {"enabled": false}}),
            "leaderElection.enabled=false",
        ),
    ] {
        let refused = render(&values, "bf", "backup-fleet-system")?
            .err()
            .with_context(|| format!("{values} was accepted"))?;
        ensure!(refused.contains(named), "{values}: {refused}");
    }
    Ok(())
}

/// A stand-in for the Prometheus Operator's ServiceMonitor CRD (not installable here), with
/// the fields the chart sets, so the apiserver checks the rendered object's shape.
fn service_monitor_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "required": ["selector", "endpoints"], "properties": {
                    "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"}}}}}}}}}}]
        }
    })
}

/// Applies `object` (server-side apply; `dry_run` only asks the apiserver to check it).
async fn apply(client: &Client, object: &Value, namespace: &str, dry_run: bool) -> Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps): (ApiResource, _) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the apiserver does not serve {api_version} {kind}"))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut params = PatchParams::apply("chart-tests").force();
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .with_context(|| format!("the apiserver refused {kind} {name}"))?;
    Ok(())
}

/// The objects of `examples/<file>`.
fn examples(file: &str) -> Result<Vec<Value>> {
    let path = tests::helm::chart_dir().join("../../examples").join(file);
    let text = std::fs::read_to_string(&path)?;
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document)?;
        if !object.is_null() {
            objects.push(object);
        }
    }
    Ok(objects)
}

#[tokio::test]
async fn the_apiserver_accepts_every_rendered_object() -> Result<()> {
    let env = shared()?;
    let mgmt = env.client("mgmt").await?;
    let release_ns = TestNamespace::create(&mgmt, "chart").await?;
    apply(&mgmt, &service_monitor_crd(), "", false).await?;
    tests::crds::wait_established(
        &mgmt,
        "servicemonitors.monitoring.coreos.com",
        tests::crds::ESTABLISHED_WITHIN,
    )
    .await?;
    let served_policy_v1 = mgmt.list_api_group_resources("policy/v1").await.is_ok();
    for (name, values) in combinations() {
        let chart = rendered(values, &release_ns.name)?;
        for crd in &chart.crds {
            let crd: Value = serde_yaml_ng::from_str(crd)?;
            apply(&mgmt, &crd, "", true).await.context(name)?;
        }
        for mut object in chart.objects()? {
            // This control plane is Kubernetes 1.20, before policy/v1 (the chart needs 1.21):
            // the PodDisruptionBudget is checked as policy/v1beta1, whose fields are the same.
            if object["kind"] == "PodDisruptionBudget" && !served_policy_v1 {
                object["apiVersion"] = json!("policy/v1beta1");
            }
            apply(&mgmt, &object, &release_ns.name, true)
                .await
                .with_context(|| format!("{name}: {object}"))?;
        }
    }
    // The README's first backup, as written, against the chart's CRDs.
    let chart = rendered(json!({}), &release_ns.name)?;
    let crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        chart
            .crds
            .iter()
            .map(|c| serde_yaml_ng::from_str(c))
            .collect::<Result<_, _>>()?;
    tests::controller::install_crds(&mgmt, &crds).await?;
    // And a project's consent, as examples/project-onboarding.yaml gives it: a RoleBinding of
    // the chart's -project-secrets ClusterRole to its ServiceAccount, for the default release.
    let onboarding = examples("project-onboarding.yaml")?;
    ensure!(onboarding.len() == 1, "{onboarding:?}");
    let default_install = render(&json!({}), "backup-fleet", "backup-fleet-system")?
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .objects()?;
    let consent = &onboarding[0];
    ensure!(
        consent["kind"] == "RoleBinding"
            && of_kind(&default_install, "ClusterRole")
                .iter()
                .any(|r| r["metadata"]["name"] == consent["roleRef"]["name"] && reads_secrets(r))
            && of_kind(&default_install, "ServiceAccount").iter().any(|a| {
                json!([{"kind": "ServiceAccount", "name": a["metadata"]["name"],
                        "namespace": a["metadata"]["namespace"]}])
                    == consent["subjects"]
            }),
        "examples/project-onboarding.yaml does not bind the default install's \
         -project-secrets ClusterRole to its ServiceAccount: {consent}"
    );
    for (file, objects) in [
        ("first-backup.yaml", examples("first-backup.yaml")?),
        ("project-onboarding.yaml", onboarding),
    ] {
        for object in objects {
            apply(&mgmt, &object, &release_ns.name, true)
                .await
                .with_context(|| format!("examples/{file}: {object}"))?;
        }
    }
    release_ns.delete().await
}
