//! The dashboard's JSON API with real tokens: TokenReview authenticates, the project's RBAC
//! (SubjectAccessReview) decides, a viewer sees but cannot download, delete or run, an editor
//! can, and nothing of another project is visible, not even its name.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use tests::TestNamespace;
use tests::controller::{ControllerProcess, Project, free_port, http_request, service_account};
use tests::env::shared;

/// Reads the server-sent events at `path` until one's data satisfies `until`; that data.
fn follow_events(
    addr: SocketAddr,
    path: &str,
    token: &str,
    until: impl Fn(&str) -> bool,
) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )?;
    for line in BufReader::new(stream).lines() {
        let line = line.context("the event stream ended or stalled")?;
        if let Some(data) = line.strip_prefix("data: ")
            && until(data)
        {
            return Ok(data.to_string());
        }
    }
    anyhow::bail!("the event stream ended before the event")
}

fn call(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let (code, bytes) = http_request(api, method, path, token, body)?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((code, value))
}

#[tokio::test]
async fn rbac_decides_what_each_caller_sees_and_does() -> Result<()> {
    let env = shared()?;
    let p = Project::create("api").await?;
    let other = Project::create("api-other").await?;
    let c1 = env.client("c1").await?;
    let app = TestNamespace::create(&c1, "api-app").await?;
    let mut settings = ConfigMap::default();
    settings.metadata.name = Some("settings".into());
    Api::<ConfigMap>::namespaced(c1.clone(), &app.name)
        .create(&PostParams::default(), &settings)
        .await?;
    p.apply(p.s3_location("main", true)?).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(
        json!({"kind": "ClusterBackup", "metadata": {"name": "once"},
        "spec": {"template": {"includedNamespaces": [app.name]}}}),
    )
    .await?;
    p.apply(json!({"kind": "ClusterBackup", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 2 * * *", "paused": true, "template": {"includedNamespaces": [app.name]}}}))
        .await?;
    p.apply(json!({"kind": "ClusterBackup", "metadata": {"name": "broken"},
        "spec": {"schedule": "61 * * * *", "paused": true, "template": {"includedNamespaces": [app.name]}}}))
        .await?;
    let read = json!({"apiGroups": ["backupfleet.dev"],
        "resources": ["storagelocations", "managedclusters", "clusterbackups", "clusterrestores"],
        "verbs": ["get", "list", "watch"]});
    let viewer = service_account(&p, "viewer", json!([read])).await?;
    let editor = service_account(
        &p,
        "editor",
        json!([read,
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterbackups"], "verbs": ["patch", "delete"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterbackups/download"], "verbs": ["get"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterrestores"], "verbs": ["create"]},
            {"apiGroups": ["backupfleet.dev"], "resources": ["managedclusters"],
             "verbs": ["restore", "restore-privileged"]}]),
    )
    .await?;
    // May create ClusterRestores, but holds no verb on any cluster.
    let clusterless = service_account(
        &p,
        "clusterless",
        json!([read,
            {"apiGroups": ["backupfleet.dev"], "resources": ["clusterrestores"], "verbs": ["create"]}]),
    )
    .await?;
    let stranger = service_account(&other, "owner", json!([read])).await?;

    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let controller = ControllerProcess::start(
        tests::controller_bin!(),
        &p,
        "api",
        &["--api-addr", &addr.to_string(), "--api-plain-http"],
    )
    .await?;
    let backup = p
        .completed_run("once", Duration::from_secs(60), &controller)
        .await?;
    let ns = p.name().to_string();
    let base = format!("/api/v1/namespaces/{ns}");

    // No token, a bad token.
    assert_eq!(call(addr, "GET", "/api/v1/namespaces", None, None)?.0, 401);
    assert_eq!(
        call(addr, "GET", "/api/v1/namespaces", Some("not-a-token"), None)?.0,
        401
    );

    // The viewer sees its project, its objects and its backups.
    let (code, projects) = call(addr, "GET", "/api/v1/namespaces", Some(&viewer), None)?;
    assert_eq!(code, 200);
    let projects: Vec<&str> = projects["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(projects.contains(&ns.as_str()), "{projects:?}");
    assert!(!projects.contains(&other.name()), "{projects:?}");
    let (code, locations) = call(
        addr,
        "GET",
        &format!("{base}/storagelocations"),
        Some(&viewer),
        None,
    )?;
    assert_eq!(
        (code, locations["items"][0]["name"].as_str()),
        (200, Some("main"))
    );
    let (code, clusters) = call(
        addr,
        "GET",
        &format!("{base}/clusters"),
        Some(&viewer),
        None,
    )?;
    assert_eq!(
        (code, clusters["items"][0]["name"].as_str()),
        (200, Some("c1"))
    );
    let (code, schedules) = call(
        addr,
        "GET",
        &format!("{base}/clusterbackups"),
        Some(&viewer),
        None,
    )?;
    assert_eq!(code, 200);
    let nightly = schedules["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == "nightly")
        .context("nightly listed")?;
    assert_eq!(
        nightly["nextRuns"].as_array().map(Vec::len),
        Some(3),
        "{nightly}"
    );
    assert!(nightly["scheduleError"].is_null(), "{nightly}");
    // A schedule that does not parse says why instead of showing no next runs.
    let broken = schedules["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == "broken")
        .context("broken listed")?;
    assert_eq!(broken["nextRuns"], json!([]), "{broken}");
    assert!(
        broken["scheduleError"]
            .as_str()
            .is_some_and(|e| e.contains("61")),
        "{broken}"
    );
    let (code, backups) = call(
        addr,
        "GET",
        &format!("{base}/clusters/c1/backups"),
        Some(&viewer),
        None,
    )?;
    assert_eq!(code, 200, "{backups}");
    let listed = &backups["items"][0];
    assert_eq!(listed["name"], backup.as_str());
    assert_eq!(listed["phase"], "Completed");
    assert_eq!(listed["checksum"], "recorded");
    assert!(
        listed["sizeBytes"].as_u64().is_some_and(|s| s > 0),
        "{listed}"
    );
    let one = format!("{base}/clusters/c1/backups/{backup}");
    assert_eq!(call(addr, "GET", &one, Some(&viewer), None)?.0, 200);
    // Seeing a backup does not mean reading it, deleting it or running the schedule.
    assert_eq!(
        call(addr, "GET", &format!("{one}/download"), Some(&viewer), None)?.0,
        403
    );
    assert_eq!(call(addr, "DELETE", &one, Some(&viewer), None)?.0, 403);
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("{base}/clusterbackups/once/run"),
            Some(&viewer),
            None
        )?
        .0,
        403
    );

    // Another project's owner sees nothing of this one: 404, as if it did not exist.
    for path in [
        format!("{base}/storagelocations"),
        format!("{base}/clusterbackups"),
        format!("{base}/clusters/c1/backups"),
        one.clone(),
        format!("{one}/download"),
    ] {
        let (code, body) = call(addr, "GET", &path, Some(&stranger), None)?;
        assert_eq!(code, 404, "{path}: {body}");
        assert!(!body.to_string().contains(&backup), "{body}");
    }

    // The editor downloads (the bytes storage holds, checksum verified on the way), runs the
    // schedule now, asks for a dry-run restore, and deletes.
    let (code, tarball) =
        http_request(addr, "GET", &format!("{one}/download"), Some(&editor), None)?;
    assert_eq!(code, 200);
    let mut stored = Vec::new();
    p.repository("c1")?
        .download_artifact_to(
            backup_core::BackupKind::Resources,
            &backup_storage::BackupName::new(&backup)?,
            &format!("{backup}.tar.gz").parse()?,
            &mut stored,
        )
        .await?;
    ensure!(tarball == stored, "the download is the stored tarball");
    // Live progress: the event stream shows the run-now run of `once` as it goes.
    assert_eq!(
        http_request(
            addr,
            "GET",
            &format!("{base}/events"),
            Some(&stranger),
            None
        )?
        .0,
        404
    );
    let events = std::thread::spawn({
        let (editor, path) = (editor.clone(), format!("{base}/events"));
        move || follow_events(addr, &path, &editor, |data| data.contains("\"once-"))
    });
    std::thread::sleep(Duration::from_millis(500));
    let (code, ran) = call(
        addr,
        "POST",
        &format!("{base}/clusterbackups/once/run"),
        Some(&editor),
        None,
    )?;
    assert_eq!(code, 200, "{ran}");
    let token = ran["runNowToken"].as_str().context("a token")?.to_string();
    p.wait_for(
        "ClusterBackup",
        "once",
        Duration::from_secs(60),
        "the run-now token served",
        |b| b["status"]["lastRunNowToken"] == token.as_str(),
    )
    .await?;
    let seen = events
        .join()
        .map_err(|_| anyhow::anyhow!("event reader panicked"))??;
    ensure!(
        seen.contains("ClusterBackup") && seen.contains("\"once-"),
        "{seen}"
    );
    // Creating a ClusterRestore is not enough: restoring into c1 needs `restore` on it, as at
    // admission, and the refusal says so.
    let (code, refused) = call(
        addr,
        "POST",
        &format!("{base}/clusterrestores"),
        Some(&clusterless),
        Some(&json!({"metadata": {"name": "plan"},
            "spec": {"source": {"cluster": "c1", "backupName": backup}, "dryRun": true}})),
    )?;
    assert_eq!(code, 403, "{refused}");
    let expected = format!(
        "cannot restore managedclusters.backupfleet.dev \"c1\" in the namespace {:?}",
        p.name()
    );
    ensure!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains(&expected)),
        "{refused}"
    );
    let (code, created) = call(
        addr,
        "POST",
        &format!("{base}/clusterrestores"),
        Some(&editor),
        Some(&json!({"metadata": {"name": "plan"},
            "spec": {"source": {"cluster": "c1", "backupName": backup}, "dryRun": true}})),
    )?;
    assert_eq!(code, 201, "{created}");
    p.wait_for(
        "ClusterRestore",
        "plan",
        Duration::from_secs(60),
        "the dry run's plan",
        |r| r["status"]["phase"] == "Completed" && r["status"]["clusters"][0]["plan"].is_object(),
    )
    .await?;
    // Both writes were the editor's as the API server saw them: the audit log names the
    // controller as the sender and the editor as whom they were made as, so RBAC and the
    // admission webhook judged the editor.
    let audit = env.management()?.audit_events()?;
    let editor_user = format!("system:serviceaccount:{ns}:editor");
    for (verb, resource) in [("create", "clusterrestores"), ("patch", "clusterbackups")] {
        let made_as: Vec<&Value> = audit
            .iter()
            .filter(|e| e["verb"] == verb && e["objectRef"]["resource"] == resource)
            .filter(|e| {
                e["objectRef"]["namespace"] == ns.as_str() && e["stage"] == "ResponseComplete"
            })
            .filter(|e| {
                e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)
            })
            .map(|e| &e["impersonatedUser"]["username"])
            .collect();
        ensure!(
            made_as.contains(&&json!(editor_user)),
            "{verb} {resource}: made as {made_as:?}, not as {editor_user}"
        );
    }
    let (code, refused) = call(
        addr,
        "POST",
        &format!("{base}/clusterrestores"),
        Some(&editor),
        Some(&json!({"metadata": {"name": "Bad Name"}, "spec": {}})),
    )?;
    assert_eq!(code, 400, "{refused}");
    // Bad input: names that try to leave their place, an oversized body.
    let (code, body) = call(
        addr,
        "GET",
        &format!("{base}/clusters/c1/backups/..%2F..%2Fetc/download"),
        Some(&editor),
        None,
    )?;
    assert_eq!(code, 400, "{body}");
    let (code, body) = call(
        addr,
        "GET",
        &format!("{base}/clusters/..%2Fc2/backups"),
        Some(&editor),
        None,
    )?;
    assert_eq!(code, 400, "{body}");
    let huge = json!({"metadata": {"name": "huge"}, "spec": {"padding": "x".repeat(3 << 20)}});
    let (code, _) = call(
        addr,
        "POST",
        &format!("{base}/clusterrestores"),
        Some(&editor),
        Some(&huge),
    )?;
    assert_eq!(code, 413);
    // A corrupted backup never downloads whole: the mismatch, found at the end, keeps the
    // last bytes back, so the download is shorter than the announced length.
    let stored_path = backup_storage::object_store::path::Path::from(format!(
        "velero/backups/{backup}/{backup}.tar.gz"
    ));
    let mut damaged = stored.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    p.repository("c1")?
        .store()
        .put_opts(
            &stored_path,
            damaged.clone().into(),
            backup_storage::object_store::PutOptions::default(),
        )
        .await?;
    match http_request(addr, "GET", &format!("{one}/download"), Some(&editor), None) {
        // Cut off after the headers: fewer bytes than announced.
        Ok((code, got)) => ensure!(
            code == 200 && got.len() < damaged.len(),
            "a corrupted backup was downloaded whole ({code}, {} of {} bytes)",
            got.len(),
            damaged.len()
        ),
        // Cut off before them (the whole tarball was one chunk): nothing at all.
        Err(e) => ensure!(
            e.to_string().contains("no end of HTTP headers"),
            "unexpected failure: {e:#}"
        ),
    }
    assert_eq!(call(addr, "DELETE", &one, Some(&editor), None)?.0, 200);
    assert_eq!(call(addr, "GET", &one, Some(&editor), None)?.0, 404);

    // Batch delete by filter (KKP): never without a filter, never for a viewer.
    let all = format!("{base}/clusters/c1/backups");
    let (code, body) = call(addr, "DELETE", &all, Some(&editor), None)?;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        call(
            addr,
            "DELETE",
            &format!("{all}?schedule=once"),
            Some(&viewer),
            None
        )?
        .0,
        403
    );
    let (code, none) = call(
        addr,
        "DELETE",
        &format!("{all}?schedule=once&phase=Failed"),
        Some(&editor),
        None,
    )?;
    assert_eq!(
        (code, none["deleted"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{none}"
    );
    let (code, bad) = call(
        addr,
        "DELETE",
        &format!("{all}?before=yesterday"),
        Some(&editor),
        None,
    )?;
    assert_eq!(code, 400, "{bad}");
    // The run-now run is what is left of `once`.
    let (code, gone) = call(
        addr,
        "DELETE",
        &format!("{all}?schedule=once"),
        Some(&editor),
        None,
    )?;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(gone["deleted"].as_array().map(Vec::len), Some(1), "{gone}");
    let (_, left) = call(addr, "GET", &all, Some(&editor), None)?;
    assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");

    // The viewer's own token, expired: refused, and the message says why.
    let expired = tests::controller::expired_copy(&viewer)?;
    let (code, refused) = call(addr, "GET", "/api/v1/namespaces", Some(&expired), None)?;
    assert_eq!(code, 401, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{refused}"
    );

    // A token whose ServiceAccount is gone no longer opens anything.
    kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(p.mgmt.clone(), &ns)
        .delete("viewer", &Default::default())
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let code = call(addr, "GET", "/api/v1/namespaces", Some(&viewer), None)?.0;
        if code == 401 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "a revoked token still answers {code}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    drop(controller);
    app.delete().await?;
    other.delete().await?;
    p.delete().await
}
