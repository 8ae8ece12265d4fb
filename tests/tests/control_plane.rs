//! End-to-end checks of the local control plane itself: the clusters serve real Kubernetes
//! semantics (CRUD, namespace deletion by the controller-manager, CRDs), and the harness hands out
//! working handles (S3, Azure Blob Storage, etcd).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backup_kube::kubeconfig::client_from_bytes;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, ResourceExt};
use serde_json::json;
use tests::{TestNamespace, shared, unique_name};

#[tokio::test]
async fn configmap_and_secret_round_trip_and_namespace_deletion_finishes() -> Result<()> {
    let env = shared()?;
    let client = env.client("c1").await?;
    let ns = TestNamespace::create(&client, "configmap_secret").await?;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    cm.data = Some([("greeting".to_owned(), "hello".to_owned())].into());
    config_maps.create(&PostParams::default(), &cm).await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let mut secret = Secret::default();
    secret.metadata.name = Some("credentials".into());
    secret.data = Some([("password".to_owned(), ByteString(b"s3cr3t".to_vec()))].into());
    secrets.create(&PostParams::default(), &secret).await?;

    let read = config_maps.get("settings").await?;
    assert_eq!(
        read.data
            .unwrap_or_default()
            .get("greeting")
            .map(String::as_str),
        Some("hello")
    );
    let read = secrets.get("credentials").await?;
    let password = read
        .data
        .unwrap_or_default()
        .remove("password")
        .map(|b| b.0);
    assert_eq!(password.as_deref(), Some(&b"s3cr3t"[..]));

    // Only a running kube-controller-manager empties and removes a deleted namespace.
    let name = ns.name.clone();
    ns.delete_and_wait(Duration::from_secs(60)).await?;
    let gone: Api<ConfigMap> = Api::namespaced(client, &name);
    assert!(gone.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_crd_on_mgmt_becomes_established_and_serves_custom_objects() -> Result<()> {
    let env = shared()?;
    let client = env.client("mgmt").await?;
    let group = format!("{}.backup-fleet.test", unique_name("g", "crd"));
    let crd_name = format!("widgets.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}}
            }]
        }
    }))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    tests::crds::wait_established(&client, &crd_name, Duration::from_secs(30)).await?;

    let ns = TestNamespace::create(&client, "crd_objects").await?;
    let resource = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
    let widget = DynamicObject::new("w1", &resource).data(json!({"spec": {"size": 3}}));
    // Discovery of a fresh CRD can lag a moment behind Established.
    let start = Instant::now();
    loop {
        match widgets.create(&PostParams::default(), &widget).await {
            Ok(_) => break,
            Err(err) if start.elapsed() < Duration::from_secs(15) => {
                eprintln!("retrying create: {err}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    let read = widgets.get("w1").await?;
    assert_eq!(read.data["spec"]["size"], json!(3));
    let listed = widgets.list(&ListParams::default()).await?;
    assert_eq!(
        listed
            .items
            .iter()
            .map(|w| w.name_any())
            .collect::<Vec<_>>(),
        ["w1"]
    );

    ns.delete().await?;
    crds.delete(&crd_name, &DeleteParams::default()).await?;
    Ok(())
}

#[test]
fn the_environment_describes_working_s3_and_etcd() -> Result<()> {
    let env = shared()?;
    let names: Vec<&str> = env.state.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"mgmt"));
    assert!(names.contains(&"c1"), "{names:?}");
    assert_eq!(env.management()?.role, "management");
    assert!(env.user_clusters().iter().all(|c| c.role == "user"));

    let s3 = env.s3();
    assert_eq!(s3.location, format!("s3://{}", s3.bucket));
    assert!(
        s3.root.join(&s3.bucket).is_dir(),
        "the bucket directory exists"
    );
    assert!(s3.endpoint.starts_with("http://127.0.0.1:"));
    assert!(!s3.access_key_id.is_empty() && !s3.secret_access_key.is_empty());
    assert!(std::fs::read_to_string(&s3.env_file)?.contains("AWS_ALLOW_HTTP=true"));
    assert!(http_get(&s3.endpoint, "/")?.starts_with("HTTP/1.1"));

    for cluster in &env.state.clusters {
        let endpoint = env.etcd_endpoint(&cluster.name)?;
        assert!(endpoint.starts_with("http://127.0.0.1:"));
        let health = http_get(endpoint, "/health")?;
        assert!(
            health.contains("\"health\":\"true\""),
            "{}: {health}",
            cluster.name
        );
        assert!(cluster.apiserver_url.starts_with("https://127.0.0.1:"));
    }
    Ok(())
}

/// Azurite serves the recorded `az://` location with the recorded options: the availability
/// probe writes, reads and deletes its sentinel there.
#[tokio::test]
async fn the_environment_describes_working_azure_blob_storage() -> Result<()> {
    let azure = shared()?.azure()?;
    assert_eq!(azure.location, format!("az://{}", azure.container));
    assert!(azure.endpoint.starts_with("http://127.0.0.1:"));
    assert!(std::fs::read_to_string(&azure.env_file)?.contains("AZURE_ALLOW_HTTP=true"));
    let repo = backup_storage::Repository::open(&azure.location, &azure.options())?
        .scoped_str("e2e", &unique_name("p", "azure"))?;
    assert_eq!(repo.probe().await, backup_storage::Availability::Available);
    Ok(())
}

#[tokio::test]
async fn the_inline_kubeconfig_is_self_contained_and_works_from_bytes() -> Result<()> {
    let env = shared()?;
    let c1 = env.cluster("c1")?;
    let bytes = std::fs::read(&c1.inline_kubeconfig)
        .with_context(|| format!("reading {}", c1.inline_kubeconfig.display()))?;

    // What a Secret would hold: everything inline, no path of this machine.
    let text = std::str::from_utf8(&bytes)?;
    let parsed = Kubeconfig::from_yaml(text)?;
    for named in &parsed.clusters {
        let cluster = named.cluster.as_ref().context("cluster stanza")?;
        assert!(cluster.certificate_authority.is_none(), "{}", named.name);
        assert!(
            cluster.certificate_authority_data.is_some(),
            "{}",
            named.name
        );
    }
    for named in &parsed.auth_infos {
        let user = named.auth_info.as_ref().context("user stanza")?;
        assert!(user.token.is_some(), "{}", named.name);
        assert!(user.token_file.is_none() && user.client_certificate.is_none());
        assert!(user.client_key.is_none() && user.exec.is_none());
    }
    let dir = env.state.dir.display().to_string();
    assert!(!text.contains(&dir), "mentions {dir}:\n{text}");
    assert!(!text.contains("certificate-authority:"), "{text}");

    // Its bytes alone make a client that talks to c1, with TLS verified by the embedded CA.
    let client = client_from_bytes(&bytes, None, Default::default()).await?;
    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");
    Ok(())
}

#[test]
fn a_stale_pid_is_not_running() -> Result<()> {
    let mut child = std::process::Command::new("true").spawn()?;
    let pid = child.id();
    child.wait()?;
    assert!(
        !tests::env_state::pid_alive(pid),
        "an exited process is not running"
    );
    assert!(tests::env_state::pid_alive(std::process::id()));
    Ok(())
}

#[test]
fn unique_names_are_valid_and_distinct() {
    let long = "a_very_long_test_name_that_goes_on_and_on_and_on_past_the_kubernetes_limit";
    let a = unique_name("t", long);
    let b = unique_name("t", long);
    assert_ne!(a, b);
    for name in [&a, &b] {
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert!(!name.ends_with('-') && name.starts_with("t-"));
    }
}

/// A plain HTTP/1.1 GET on 127.0.0.1 returning the whole response (status line, headers, body).
fn http_get(endpoint: &str, path: &str) -> Result<String> {
    let authority = endpoint
        .strip_prefix("http://")
        .context("not an http:// endpoint")?;
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}
