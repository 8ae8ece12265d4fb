//! `backupctl backup ...` and `backupctl restore create` end to end, as a user runs them: the real
//! binary against the real local control plane (`tests::shared()`), a fresh `file://` location
//! per test and unique namespace and backup names, so the tests run in parallel with others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tests::{TestNamespace, unique_name};

mod common;

use common::{backupctl, backupctl_command, run_fails, run_ok, stderr, stdout};

/// One test's storage location: a temporary directory behind a `file://` URL.
struct Location {
    dir: tempfile::TempDir,
    url: String,
}

impl Location {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("file://{}", dir.path().display());
        Ok(Self { dir, url })
    }

    /// The directory of backup `name` inside the default scope (`default/local`).
    fn backup_dir(&self, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("default/local/velero/backups")
            .join(name)
    }
}

fn kubeconfig(cluster: &str) -> Result<String> {
    Ok(tests::shared()?
        .cluster(cluster)?
        .kubeconfig
        .display()
        .to_string())
}

/// `backup list -o json` as parsed rows.
fn list(loc: &Location) -> Result<Vec<serde_json::Value>> {
    let out = run_ok(&["backup", "list", "--location", &loc.url, "-o", "json"])?;
    let rows: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("list output is not JSON: {out}"))?;
    rows.as_array()
        .cloned()
        .with_context(|| format!("list output is not an array: {out}"))
}

fn listed<'a>(rows: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["name"] == name)
}

/// `backup create NAME` of namespace `ns` on c1, waiting, returning the printed row.
fn create_backup(loc: &Location, name: &str, ns: &str) -> Result<serde_json::Value> {
    create_backup_with(loc, name, ns, &[])
}

/// Like [`create_backup`], with more `backup create` arguments.
fn create_backup_with(
    loc: &Location,
    name: &str,
    ns: &str,
    extra: &[&str],
) -> Result<serde_json::Value> {
    let kc = kubeconfig("c1")?;
    let mut args = vec![
        "backup",
        "create",
        name,
        "--kubeconfig",
        &kc,
        "--location",
        &loc.url,
        "--include-namespaces",
        ns,
        "--wait",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = run_ok(&args)?;
    let rows: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("create output is not JSON: {out}"))?;
    ensure!(rows[0]["name"] == name, "create printed {rows}");
    Ok(rows[0].clone())
}

fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..ObjectMeta::default()
    }
}

fn config_data() -> BTreeMap<String, String> {
    [
        ("greeting".to_owned(), "hello".to_owned()),
        ("multi".to_owned(), "line one\nline two\n".to_owned()),
    ]
    .into()
}

fn secret_data() -> BTreeMap<String, ByteString> {
    [
        ("password".to_owned(), ByteString(b"s3cr3t!".to_vec())),
        ("binary".to_owned(), ByteString(vec![0, 1, 2, 255])),
    ]
    .into()
}

/// A namespace on c1 holding the ConfigMap `settings` and the Secret `credentials`.
async fn populated_namespace(client: &Client, test: &str) -> Result<TestNamespace> {
    let ns = TestNamespace::create(client, test).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: meta("settings", &ns.name),
            data: Some(config_data()),
            ..ConfigMap::default()
        },
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("credentials", &ns.name),
                data: Some(secret_data()),
                type_: Some("Opaque".into()),
                ..Secret::default()
            },
        )
        .await?;
    Ok(ns)
}

/// Asserts `settings` and `credentials` in `ns` (reached through `client`) hold the test data.
async fn assert_restored(client: &Client, ns: &str) -> Result<()> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt("settings")
        .await?
        .with_context(|| format!("ConfigMap {ns}/settings was not restored"))?;
    assert_eq!(cm.data, Some(config_data()), "ConfigMap {ns}/settings data");
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt("credentials")
        .await?
        .with_context(|| format!("Secret {ns}/credentials was not restored"))?;
    assert_eq!(
        secret.data,
        Some(secret_data()),
        "Secret {ns}/credentials data"
    );
    Ok(())
}

/// Deletes a namespace by name (one not owned by a [`TestNamespace`] any more), if present.
async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    Ok(stdout(&out)
        .split_whitespace()
        .next()
        .context("sha256sum printed nothing")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_list_describe_download_and_restore_into_the_same_cluster() -> Result<()> {
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let loc = Location::new()?;
    let ns = populated_namespace(&c1, "bk-roundtrip").await?;
    let ns_name = ns.name.clone();
    let name = unique_name("bk", "roundtrip");

    let created = create_backup(&loc, &name, &ns_name)?;
    assert_eq!(created["phase"], "Completed", "{created}");

    // list: Completed, and the namespace, the ConfigMap, the Secret (plus the namespace's own
    // kube-root-ca.crt ConfigMap and possibly a ServiceAccount) were backed up.
    let rows = list(&loc)?;
    let row = listed(&rows, &name).with_context(|| format!("{name} not listed: {rows:?}"))?;
    assert_eq!(row["phase"], "Completed", "{row}");
    let items = row["items"].as_u64().context("items is a number")?;
    assert!(items >= 3, "only {items} items backed up: {row}");
    assert_eq!(row["items"], created["items"], "list and create disagree");
    assert_eq!(row["errors"], 0, "{row}");

    // describe -o yaml parses and names the backup, its namespace and its files.
    let yaml = run_ok(&[
        "backup",
        "describe",
        &name,
        "--location",
        &loc.url,
        "-o",
        "yaml",
    ])?;
    let described: serde_json::Value = serde_yaml_ng::from_str(&yaml)
        .with_context(|| format!("describe output is not YAML: {yaml}"))?;
    let described = &described[0];
    assert_eq!(described["name"], name.as_str());
    assert_eq!(described["phase"], "Completed");
    assert_eq!(described["veleroBackup"]["kind"], "Backup");
    assert_eq!(
        described["veleroBackup"]["spec"]["includedNamespaces"],
        serde_json::json!([ns_name])
    );

    // logs: the engine's log, decompressed.
    let log = run_ok(&["backup", "logs", &name, "--location", &loc.url])?;
    assert!(log.contains(&format!("starting backup {name}")), "{log}");

    // Velero's verbs: `get` lists the same rows; the table shows sizes as people read them.
    let got = run_ok(&["backup", "get", "--location", &loc.url, "-o", "json"])?;
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&got)?, rows);
    let table = run_ok(&["backup", "get", "--location", &loc.url])?;
    let line = table
        .lines()
        .find(|l| l.starts_with(&name))
        .with_context(|| format!("{name} not in the table: {table}"))?;
    let size = row["size"].as_u64().context("size is exact bytes")?;
    assert!(
        line.ends_with(&backup_core::human_bytes(size)) && !line.ends_with(&size.to_string()),
        "{line}"
    );
    // describe --details lists the resources by kind, as Velero's does.
    let details = run_ok(&[
        "backup",
        "describe",
        &name,
        "--details",
        "--location",
        &loc.url,
    ])?;
    let listed = details
        .split_once("\nResource List:\n")
        .with_context(|| format!("no resource list: {details}"))?
        .1;
    assert!(
        listed.contains("  v1/ConfigMap:\n")
            && listed.contains(&format!("    - {ns_name}/settings\n"))
            && listed.contains(&format!("    - {ns_name}/credentials\n")),
        "{listed}"
    );
    let details: serde_json::Value = serde_json::from_str(&run_ok(&[
        "backup",
        "describe",
        &name,
        "--details",
        "--location",
        &loc.url,
        "-o",
        "json",
    ])?)?;
    let configmaps = &details[0]["resourceList"]["v1/ConfigMap"];
    assert!(
        configmaps
            .as_array()
            .is_some_and(|c| c.contains(&serde_json::json!(format!("{ns_name}/settings")))),
        "{details}"
    );
    assert!(
        described.get("resourceList").is_none(),
        "only with --details"
    );

    // --or-selector: only what matches one of the selectors (as Velero's orLabelSelectors).
    Api::<ConfigMap>::namespaced(c1.clone(), &ns_name)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    labels: Some([("app".to_string(), "picked".to_string())].into()),
                    ..meta("picked", &ns_name)
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    let picked = create_backup_with(
        &loc,
        &format!("{name}-or"),
        &ns_name,
        &["--or-selector", "app=picked", "--or-selector", "app=absent"],
    )?;
    let picked_items = picked["items"].as_u64().context("items is a number")?;
    assert!(
        (1..items).contains(&picked_items),
        "only the labelled ConfigMap (and its namespace): {picked}"
    );
    let both = run_fails(&[
        "backup",
        "create",
        "x",
        "--location",
        &loc.url,
        "-l",
        "a=b",
        "--or-selector",
        "c=d",
    ])?;
    assert!(both.contains("--or-selector"), "{both}");

    // download: a gzip tarball whose SHA-256 is the manifest's record.
    let tarball = format!("{name}.tar.gz");
    let manifest_path = loc.backup_dir(&name).join("backup-manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path)?)?;
    let record = manifest["artifacts"]
        .as_array()
        .context("manifest artifacts")?
        .iter()
        .find(|a| a["name"] == tarball.as_str())
        .with_context(|| format!("no {tarball} in {manifest}"))?
        .clone();
    let described_record = described["files"]
        .as_array()
        .context("describe files")?
        .iter()
        .find(|a| a["name"] == tarball.as_str())
        .with_context(|| format!("describe lists no {tarball}"))?;
    assert_eq!(described_record["sha256"], record["sha256"]);
    let target = loc.dir.path().join("download/out.tgz");
    std::fs::create_dir_all(target.parent().unwrap())?;
    let target_str = target.display().to_string();
    let out = run_ok(&[
        "backup",
        "download",
        &name,
        "--location",
        &loc.url,
        "-o",
        &target_str,
    ])?;
    let bytes = std::fs::read(&target)?;
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]),
        "download is not gzip: {out}"
    );
    assert_eq!(Some(bytes.len() as u64), record["size"].as_u64());
    let sha = sha256_of(&target)?;
    assert_eq!(Some(sha.as_str()), record["sha256"].as_str(), "{out}");
    assert!(
        out.contains(&sha),
        "download does not report the sha256: {out}"
    );

    // Lose the namespace, then restore it from the backup.
    ns.delete_and_wait(Duration::from_secs(120)).await?;
    let gone = Api::<ConfigMap>::namespaced(c1.clone(), &ns_name)
        .get_opt("settings")
        .await?;
    assert!(gone.is_none(), "the ConfigMap survived the namespace");
    let kc = kubeconfig("c1")?;
    let restore = unique_name("rs", "roundtrip");
    let out = run_ok(&[
        "restore",
        "create",
        &restore,
        "--from-backup",
        &name,
        "--kubeconfig",
        &kc,
        "--location",
        &loc.url,
        "-o",
        "json",
    ])?;
    let summary: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(summary[0]["phase"], "Completed", "{out}");
    assert_eq!(summary[0]["failed"], 0, "{out}");
    assert!(
        summary[0]["created"].as_u64().unwrap_or(0) >= 2,
        "nothing created: {out}"
    );
    let result = assert_restored(&c1, &ns_name).await;
    delete_namespace(&c1, &ns_name).await?;
    result?;

    // The restore is stored: listed, described with its counts, then deleted.
    let listed: Vec<serde_json::Value> = serde_json::from_str(&run_ok(&[
        "restore",
        "list",
        "--location",
        &loc.url,
        "-o",
        "json",
    ])?)?;
    let row = listed
        .iter()
        .find(|r| r["name"] == restore.as_str())
        .with_context(|| format!("{restore} not listed: {listed:?}"))?;
    assert_eq!(row["phase"], "Completed", "{row}");
    assert!(row["items"].as_u64().unwrap_or(0) >= 2, "{row}");
    assert!(row["completed"].is_string(), "{row}");
    let described: serde_json::Value = serde_json::from_str(&run_ok(&[
        "restore",
        "describe",
        &restore,
        "--location",
        &loc.url,
        "-o",
        "json",
    ])?)?;
    assert_eq!(described[0]["phase"], "Completed", "{described}");
    assert!(
        described[0]["errors"]
            .as_array()
            .is_some_and(|e| e.is_empty())
    );
    // The restore's record is committed like a backup: its manifest lists each file with the
    // SHA-256 of what is stored, and a damaged file is refused instead of misread.
    let record = loc
        .dir
        .path()
        .join("default/local/velero/restores")
        .join(&restore);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record.join("backup-manifest.json"))?)?;
    let artifacts = manifest["artifacts"].as_array().context("no artifacts")?;
    let mut names: Vec<&str> = artifacts
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("restore-{restore}-logs.gz"),
            format!("restore-{restore}-resource-list.json.gz"),
            format!("restore-{restore}-results.gz"),
        ]
    );
    for artifact in artifacts {
        let file = record.join(artifact["name"].as_str().unwrap_or_default());
        assert_eq!(artifact["sha256"], sha256_of(&file)?.as_str(), "{file:?}");
    }
    assert_eq!(manifest["attributes"]["phase"], "Completed", "{manifest}");
    // Every file of the record, the resource list (which only gives the item count) included.
    for file in ["results.gz", "resource-list.json.gz"] {
        let path = record.join(format!("restore-{restore}-{file}"));
        let good = std::fs::read(&path)?;
        let mut damaged = good.clone();
        damaged.push(0);
        std::fs::write(&path, &damaged)?;
        let refused = run_fails(&["restore", "describe", &restore, "--location", &loc.url])?;
        assert!(refused.contains("altered or damaged"), "{file}: {refused}");
        std::fs::write(&path, &good)?;
    }
    run_ok(&["restore", "describe", &restore, "--location", &loc.url])?;

    // Velero's verbs: `restore get` lists it, `restore logs` prints its log, checked against
    // the record like its other files.
    let got = run_ok(&["restore", "get", "--location", &loc.url])?;
    assert!(got.lines().any(|l| l.starts_with(&restore)), "{got}");
    let log = run_ok(&["restore", "logs", &restore, "--location", &loc.url])?;
    assert!(
        log.contains(&format!("starting restore {restore} from backup {name}")),
        "{log}"
    );
    let log_path = record.join(format!("restore-{restore}-logs.gz"));
    let good = std::fs::read(&log_path)?;
    std::fs::write(&log_path, [&good[..], b"x"].concat())?;
    let refused = run_fails(&["restore", "logs", &restore, "--location", &loc.url])?;
    assert!(refused.contains("altered or damaged"), "{refused}");
    std::fs::write(&log_path, &good)?;
    let none = run_fails(&["restore", "logs", "no-such-restore", "--location", &loc.url])?;
    assert!(
        none.contains("no stored log of restore no-such-restore"),
        "{none}"
    );

    run_ok(&["restore", "delete", &restore, "--location", &loc.url])?;
    let after: Vec<serde_json::Value> = serde_json::from_str(&run_ok(&[
        "restore",
        "list",
        "--location",
        &loc.url,
        "-o",
        "json",
    ])?)?;
    assert!(
        after.iter().all(|r| r["name"] != restore.as_str()),
        "{after:?}"
    );
    let missing = run_fails(&["restore", "describe", &restore, "--location", &loc.url])?;
    assert!(missing.contains("restore list"), "{missing}");
    let again = run_fails(&["restore", "delete", &restore, "--location", &loc.url])?;
    assert!(again.contains("nothing deleted"), "{again}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_into_another_cluster_with_a_namespace_mapping() -> Result<()> {
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let loc = Location::new()?;
    let ns = populated_namespace(&c1, "bk-migrate").await?;
    let name = unique_name("bk", "migrate");
    create_backup(&loc, &name, &ns.name)?;

    let moved = format!("{}-moved", ns.name);
    let mapping = format!("{}:{moved}", ns.name);
    let kc2 = kubeconfig("c2")?;
    let restore = unique_name("rs", "migrate");
    // Velero's resource modifiers: the settings ConfigMap gets a label (matched as it is in the
    // backup, under its original namespace).
    let modifiers = loc.dir.path().join("modifiers.yaml");
    std::fs::write(
        &modifiers,
        format!(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: configmaps\n    namespaces: [{}]\n    resourceNameRegex: '^settings$'\n  patches:\n  - operation: add\n    path: /metadata/labels\n    value: '{{\"moved\": \"yes\"}}'\n",
            ns.name
        ),
    )?;
    let modifiers = modifiers.display().to_string();
    let out = backupctl(&[
        "restore",
        "create",
        &restore,
        "--from-backup",
        &name,
        "--kubeconfig",
        &kc2,
        "--location",
        &loc.url,
        "--namespace-mapping",
        &mapping,
        "--resource-modifiers",
        &modifiers,
        "-o",
        "json",
    ]);
    let checks = async {
        ensure!(out.status.success(), "restore failed: {}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&out))?;
        assert_eq!(summary[0]["phase"], "Completed", "{summary}");
        assert_restored(&c2, &moved).await?;
        let labels = Api::<ConfigMap>::namespaced(c2.clone(), &moved)
            .get("settings")
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        assert_eq!(labels.get("moved").map(String::as_str), Some("yes"), "{labels:?}");
        // A malformed document is refused before anything is read or created.
        let bad = loc.dir.path().join("bad.yaml");
        std::fs::write(&bad, "version: v1\nresourceModifierRules:\n- conditions: {groupResource: ''}\n  patches: [{operation: remove, path: /a}]\n")?;
        let refused = run_fails(&[
            "restore", "create", "never", "--from-backup", &name, "--kubeconfig", &kc2,
            "--location", &loc.url, "--resource-modifiers", &bad.display().to_string(),
        ])?;
        assert!(refused.contains("groupResource"), "{refused}");
        // Restored again: the objects that now exist are one line, not one line each.
        let again = backupctl(&[
            "restore", "create", &format!("{restore}-again"), "--from-backup", &name,
            "--kubeconfig", &kc2, "--location", &loc.url, "--namespace-mapping", &mapping,
        ]);
        let err = stderr(&again);
        let existed: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("already exist") || l.contains("left unchanged"))
            .collect();
        assert_eq!(existed.len(), 1, "{err}");
        assert!(existed[0].contains("objects already existed"), "{err}");
        assert!(existed[0].contains("restore describe"), "{err}");
        // Only the mapped namespace: nothing under the original name on c2.
        let original = Api::<Namespace>::all(c2.clone()).get_opt(&ns.name).await?;
        assert!(original.is_none(), "{} was created on c2 unmapped", ns.name);
        Ok(())
    }
    .await;
    delete_namespace(&c2, &moved).await?;
    delete_namespace(&c2, &ns.name).await?;
    ns.delete().await?;
    checks
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_backup_from_the_list_and_the_location() -> Result<()> {
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let loc = Location::new()?;
    let ns = populated_namespace(&c1, "bk-delete").await?;
    let name = unique_name("bk", "delete");
    let keep = unique_name("bk", "keep");
    let result = async {
        create_backup(&loc, &name, &ns.name)?;
        create_backup(&loc, &keep, &ns.name)?;
        let dir = loc.backup_dir(&name);
        ensure!(dir.join("backup-manifest.json").is_file(), "no manifest");
        ensure!(listed(&list(&loc)?, &name).is_some(), "{name} not listed");

        let out = run_ok(&[
            "backup",
            "delete",
            &name,
            "--location",
            &loc.url,
            "-o",
            "json",
        ])?;
        let rows: serde_json::Value = serde_json::from_str(&out)?;
        assert_eq!(rows[0]["phase"], "Deleted", "{out}");

        let rows = list(&loc)?;
        assert!(
            listed(&rows, &name).is_none(),
            "{name} still listed: {rows:?}"
        );
        assert!(
            listed(&rows, &keep).is_some(),
            "{keep} was deleted too: {rows:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "files left after delete: {left:?}");
        assert!(loc.backup_dir(&keep).join("backup-manifest.json").is_file());

        // Deleting it again says it is not there.
        let err = run_fails(&["backup", "delete", &name, "--location", &loc.url])?;
        assert!(err.contains(&name), "{err}");
        Ok(())
    }
    .await;
    ns.delete().await?;
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_fails_with_a_message_naming_the_problem() -> Result<()> {
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let loc = Location::new()?;
    let ns = populated_namespace(&c1, "bk-bad-input").await?;
    let name = unique_name("bk", "bad-input");
    let kc = kubeconfig("c1")?;
    let result = async {
        create_backup(&loc, &name, &ns.name)?;
        let before = std::fs::read(loc.backup_dir(&name).join("backup-manifest.json"))?;

        // An existing name: refused, and the existing backup is untouched.
        let err = run_fails(&[
            "backup",
            "create",
            &name,
            "--kubeconfig",
            &kc,
            "--location",
            &loc.url,
            "--include-namespaces",
            &ns.name,
        ])?;
        assert!(
            err.contains(&name) && err.contains("already exists"),
            "{err}"
        );
        let after = std::fs::read(loc.backup_dir(&name).join("backup-manifest.json"))?;
        assert_eq!(before, after, "the existing backup's manifest changed");

        // A backup that does not exist.
        let restore = unique_name("rs", "bad-input");
        let err = run_fails(&[
            "restore",
            "create",
            &restore,
            "--from-backup",
            "does-not-exist",
            "--kubeconfig",
            &kc,
            "--location",
            &loc.url,
        ])?;
        assert!(
            err.contains("does-not-exist") && err.contains("not found"),
            "{err}"
        );

        // A kubeconfig that is not there.
        let missing = loc.dir.path().join("no-such-kubeconfig");
        let missing = missing.display().to_string();
        let fresh = unique_name("bk", "bad-input");
        let err = run_fails(&[
            "backup",
            "create",
            &fresh,
            "--kubeconfig",
            &missing,
            "--location",
            &loc.url,
        ])?;
        assert!(
            err.contains(&missing) && err.contains("kubeconfig"),
            "{err}"
        );

        // A context the kubeconfig does not have.
        let err = run_fails(&[
            "backup",
            "create",
            &fresh,
            "--kubeconfig",
            &kc,
            "--context",
            "nope",
            "--location",
            &loc.url,
        ])?;
        assert!(err.contains("\"nope\"") && err.contains("context"), "{err}");

        // A negative TTL: as two words clap takes `-1h` for a flag; with `=` the value reaches
        // the TTL check.
        let err = run_fails(&[
            "backup",
            "create",
            &fresh,
            "--kubeconfig",
            &kc,
            "--location",
            &loc.url,
            "--ttl",
            "-1h",
        ])?;
        assert!(err.contains("-1"), "{err}");
        let err = run_fails(&[
            "backup",
            "create",
            &fresh,
            "--kubeconfig",
            &kc,
            "--location",
            &loc.url,
            "--ttl=-1h",
        ])?;
        assert!(err.contains("--ttl") && err.contains("negative"), "{err}");

        // None of the failures left a backup behind.
        let rows = list(&loc)?;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(!loc.backup_dir(&fresh).exists(), "{fresh} left files");
        Ok(())
    }
    .await;
    ns.delete().await?;
    result
}

/// The backup's stored files (all but the manifest), by name.
fn stored_files(loc: &Location, name: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(loc.backup_dir(name))? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file != "backup-manifest.json" {
            files.insert(file.replace(name, "NAME"), entry.path());
        }
    }
    Ok(files)
}

/// What a Velero file holds, comparable between two backups of the same objects: the tarball's
/// item paths and the `settings` ConfigMap's data, velero-backup.json's spec and phase, the
/// resource list; logs and results only decompress.
fn contents(file: &str, path: &Path) -> Result<serde_json::Value> {
    use backup_velero::format::{BackupObject, ResourceList, gunzip_json, read_tarball};
    let bytes = std::fs::read(path)?;
    Ok(match file {
        "NAME.tar.gz" => {
            let items = read_tarball(&bytes[..]).context("our tarball reader refuses it")?;
            let settings = items
                .iter()
                .find(|i| i.path.resource == "configmaps" && i.path.name == "settings")
                .context("no settings ConfigMap")?;
            let settings: serde_json::Value = serde_json::from_slice(&settings.data)?;
            let mut paths: Vec<String> = items.iter().map(|i| i.path.to_string()).collect();
            paths.sort();
            serde_json::json!({"paths": paths, "settings": settings["data"]})
        }
        "velero-backup.json" => {
            let object = BackupObject::from_json(&bytes)?;
            serde_json::json!({"phase": object.phase.to_string(), "namespaces": object.spec.filter.included_namespaces})
        }
        "NAME-resource-list.json.gz" => serde_json::to_value(gunzip_json::<ResourceList>(&bytes)?)?,
        _ => {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&bytes[..]),
                &mut text,
            )?;
            serde_json::Value::Null
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_backups_interoperate_with_age_and_restore_only_with_their_key() -> Result<()> {
    tests::age::ensure_installed()?;
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let loc = Location::new()?;
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("key.txt");
    let recipient = tests::age::keygen(&key)?;
    let stranger = keys.path().join("stranger.txt");
    tests::age::keygen(&stranger)?;
    let (key_arg, stranger_arg) = (key.display().to_string(), stranger.display().to_string());
    let ns = populated_namespace(&c1, "bk-encrypted").await?;
    let ns_name = ns.name.clone();
    let name = unique_name("bk", "encrypted");
    let plain = unique_name("bk", "plain");
    let kc = kubeconfig("c1")?;

    // Keys made by age-keygen: the recipient as --encrypt-to.
    let created = create_backup_with(&loc, &name, &ns_name, &["--encrypt-to", &recipient])?;
    assert_eq!(created["phase"], "Completed", "{created}");
    create_backup(&loc, &plain, &ns_name)?;
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(
        loc.backup_dir(&name).join("backup-manifest.json"),
    )?)?;
    let fingerprint = manifest["artifacts"][0]["encryption"]["recipients"][0]
        .as_str()
        .context("recipient fingerprint in the manifest")?
        .to_string();

    // Every stored file is an age file that the real age CLI decrypts into what the
    // unencrypted backup of the same objects holds.
    let encrypted = stored_files(&loc, &name)?;
    let unencrypted = stored_files(&loc, &plain)?;
    assert_eq!(
        encrypted.keys().collect::<Vec<_>>(),
        unencrypted.keys().collect::<Vec<_>>()
    );
    for (file, path) in &encrypted {
        assert!(
            std::fs::read(path)?.starts_with(b"age-encryption.org/v1\n"),
            "{file} is not stored as age"
        );
        let decrypted = tests::age::decrypt_beside(&key, path)?;
        let expected = contents(file, &unencrypted[file])?;
        assert_eq!(contents(file, &decrypted)?, expected, "{file}");
        std::fs::remove_file(decrypted)?;
    }

    // Listing needs no key; describe shows the manifest's facts without one, everything with.
    let rows = list(&loc)?;
    let row = listed(&rows, &name).context("not listed")?;
    assert_eq!(row["phase"], "Completed", "{row}");
    assert_eq!(row["items"], created["items"], "{row}");
    let describe = |extra: &[&str]| {
        backupctl(
            &[
                &[
                    "backup",
                    "describe",
                    &name,
                    "--location",
                    &loc.url,
                    "-o",
                    "json",
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let out = describe(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let described: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(described[0]["phase"], "Completed");
    assert_eq!(described[0]["veleroBackup"], serde_json::Value::Null);
    assert_eq!(
        described[0]["encryptedTo"],
        serde_json::json!([fingerprint])
    );
    let out = describe(&["--identity-file", &key_arg]);
    let described: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(
        described[0]["veleroBackup"]["kind"], "Backup",
        "{described}"
    );
    let out = describe(&["--identity-file", &stranger_arg]);
    assert!(!out.status.success() && stderr(&out).contains(&fingerprint));

    // Download: refused without a key (naming it, writing nothing); --raw is the stored
    // ciphertext; with the key, what age -d gives.
    let target = keys.path().join("download.tgz");
    let target_arg = target.display().to_string();
    let download = |extra: &[&str]| {
        backupctl(
            &[
                &[
                    "backup",
                    "download",
                    &name,
                    "--location",
                    &loc.url,
                    "-o",
                    &target_arg,
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let out = download(&[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&fingerprint) && err.contains("--identity-file") && err.contains("--raw"),
        "{err}"
    );
    assert!(!target.exists());
    let tarball = &encrypted["NAME.tar.gz"];
    run_ok(&[
        "backup",
        "download",
        &name,
        "--location",
        &loc.url,
        "-o",
        &target_arg,
        "--raw",
    ])?;
    assert!(std::fs::read(&target)? == std::fs::read(tarball)?);
    let out = download(&["--identity-file", &key_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("decrypted"), "{}", stdout(&out));
    let by_age = tests::age::decrypt_beside(&key, tarball)?;
    assert!(std::fs::read(&target)? == std::fs::read(&by_age)?);

    // Restore: without the key or with another, refused before anything is created.
    ns.delete_and_wait(Duration::from_secs(120)).await?;
    let restore = |restore_name: &str, backup: &str, extra: &[&str]| {
        backupctl(
            &[
                &["restore", "create", restore_name, "--from-backup", backup][..],
                &["--kubeconfig", &kc, "--location", &loc.url, "-o", "json"][..],
                extra,
            ]
            .concat(),
        )
    };
    for extra in [&[][..], &["--identity-file", &stranger_arg][..]] {
        let out = restore(&unique_name("rs", "encrypted"), &name, extra);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(&fingerprint), "{}", stderr(&out));
    }
    let absent = Api::<Namespace>::all(c1.clone()).get_opt(&ns_name).await?;
    assert!(absent.is_none(), "a refused restore created the namespace");
    let out = restore(
        &unique_name("rs", "encrypted"),
        &name,
        &["--identity-file", &key_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result = assert_restored(&c1, &ns_name).await;

    // Key rotation: the next backup goes to a new key (a recipients file this time); the old
    // key cannot read it, the identity files of both read both (dry runs: nothing written).
    let rotated_key = keys.path().join("rotated.txt");
    let recipients = keys.path().join("recipients.txt");
    std::fs::write(
        &recipients,
        format!("# after rotation\n{}\n", tests::age::keygen(&rotated_key)?),
    )?;
    let rotated = unique_name("bk", "rotated");
    create_backup_with(
        &loc,
        &rotated,
        &ns_name,
        &["--encrypt-to-file", &recipients.display().to_string()],
    )?;
    let rotated_arg = rotated_key.display().to_string();
    let out = restore(
        &unique_name("rs", "rotated"),
        &rotated,
        &["--dry-run", "--identity-file", &key_arg],
    );
    assert!(!out.status.success(), "the old key reads the new backup");
    for backup in [&name, &rotated] {
        let both = [
            "--dry-run",
            "--identity-file",
            &key_arg,
            "--identity-file",
            &rotated_arg,
        ];
        let out = restore(&unique_name("rs", "rotated"), backup, &both);
        assert!(out.status.success(), "{backup}: {}", stderr(&out));
    }
    delete_namespace(&c1, &ns_name).await?;
    result
}

#[test]
fn encryption_flags_are_checked_before_connecting() -> Result<()> {
    let loc = Location::new()?;
    let missing_kubeconfig = loc.dir.path().join("no-such-kubeconfig");
    let missing_kubeconfig = missing_kubeconfig.display().to_string();
    let err = run_fails(&[
        "backup",
        "create",
        "b",
        "--kubeconfig",
        &missing_kubeconfig,
        "--location",
        &loc.url,
        "--encrypt-to",
        "age1notakey",
    ])?;
    assert!(err.contains("invalid age recipient `age1notakey`"), "{err}");
    assert!(
        !err.contains("kubeconfig"),
        "checked before connecting: {err}"
    );
    let not_identity = loc.dir.path().join("not-an-identity.txt");
    std::fs::write(&not_identity, "hello\n")?;
    let not_identity = not_identity.display().to_string();
    let err = run_fails(&[
        "restore",
        "create",
        "r",
        "--from-backup",
        "b",
        "--kubeconfig",
        &missing_kubeconfig,
        "--location",
        &loc.url,
        "--identity-file",
        &not_identity,
    ])?;
    assert!(err.contains("invalid age identity file: line 1"), "{err}");
    assert!(
        !err.contains("hello"),
        "never echoes an identity file: {err}"
    );
    let err = run_fails(&[
        "backup",
        "download",
        "b",
        "--location",
        &loc.url,
        "-o",
        "/tmp/never",
        "--raw",
        "--identity-file",
        &not_identity,
    ])?;
    assert!(
        err.contains("--raw") && err.contains("--identity-file"),
        "{err}"
    );
    Ok(())
}

/// Whether `dir` holds any file (at any depth).
fn has_any_file(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let path = e.path();
        path.is_file() || (path.is_dir() && has_any_file(&path))
    })
}

/// Creates `count` ConfigMaps of 4 KiB each in `ns`.
async fn fill_with_config_maps(client: &Client, ns: &str, count: usize) -> Result<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let payload = "x".repeat(4096);
    futures::stream::iter(0..count)
        .map(|i| {
            let cms = cms.clone();
            let cm = ConfigMap {
                metadata: meta(&format!("cm-{i:05}"), ns),
                data: Some([("payload".to_owned(), payload.clone())].into()),
                ..ConfigMap::default()
            };
            async move { cms.create(&PostParams::default(), &cm).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_running_backup_leaves_nothing_listed() -> Result<()> {
    const OBJECTS: usize = 4000;
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let loc = Location::new()?;
    let ns = TestNamespace::create(&c1, "bk-kill").await?;
    let name = unique_name("bk", "kill");
    let kc = kubeconfig("c1")?;
    let result = async {
        fill_with_config_maps(&c1, &ns.name, OBJECTS).await?;

        let mut child = backupctl_command()
            .args([
                "backup",
                "create",
                &name,
                "--kubeconfig",
                &kc,
                "--location",
                &loc.url,
                "--include-namespaces",
                &ns.name,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Kill it as soon as it has written anything for the backup, or after 300 ms. (A full
        // backup of these objects takes over a second here, and the direct engine writes its
        // files only near the end, so the kill lands mid-backup; the check below makes sure.)
        let dir = loc.backup_dir(&name);
        let start = Instant::now();
        while !has_any_file(&dir) && start.elapsed() < Duration::from_millis(300) {
            if let Some(status) = child.try_wait()? {
                bail!("backupctl exited ({status}) before it could be killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let killed_after = start.elapsed();
        child.kill()?;
        let status = child.wait()?;
        // Once it is dead, nothing more can be written: the commit point must not be there.
        ensure!(
            !dir.join("backup-manifest.json").exists(),
            "the backup of {OBJECTS} ConfigMaps completed before the kill ({status}, after \
             {killed_after:?}); use more objects so the kill lands mid-backup"
        );

        let rows = list(&loc)?;
        assert!(
            listed(&rows, &name).is_none(),
            "a killed backup is listed: {rows:?}"
        );
        Ok(())
    }
    .await;
    ns.delete().await?;
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_from_a_schedule_uses_its_newest_backup() -> Result<()> {
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let loc = Location::new()?;
    let ns = populated_namespace(&c1, "bk-sched").await?;
    let schedule = unique_name("nightly", "sched");
    let mut names = Vec::new();
    for (i, which) in ["older", "newer"].iter().enumerate() {
        let name = unique_name("bk", which);
        create_backup_with(&loc, &name, &ns.name, &["--schedule", &schedule])?;
        names.push(name);
        if i == 0 {
            // Backups are ordered by start time, at second precision.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    }
    // A newer manual backup does not belong to the schedule and must not be chosen.
    create_backup(&loc, &unique_name("bk", "manual"), &ns.name)?;

    let moved = format!("{}-sched", ns.name);
    let kc2 = kubeconfig("c2")?;
    let out = backupctl(&[
        "restore",
        "create",
        &unique_name("rs", "sched"),
        "--from-schedule",
        &schedule,
        "--kubeconfig",
        &kc2,
        "--location",
        &loc.url,
        "--namespace-mapping",
        &format!("{}:{moved}", ns.name),
        "-o",
        "json",
    ]);
    let checks = async {
        ensure!(out.status.success(), "restore failed: {}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&out))?;
        assert_eq!(summary[0]["phase"], "Completed", "{summary}");
        assert_eq!(summary[0]["backup"], names[1].as_str(), "{summary}");
        assert_restored(&c2, &moved).await?;
        // Without a backup of the schedule: a clear error naming it.
        let err = run_fails(&[
            "restore",
            "create",
            &unique_name("rs", "nosched"),
            "--from-schedule",
            "never-ran",
            "--kubeconfig",
            &kc2,
            "--location",
            &loc.url,
        ])?;
        ensure!(err.contains("never-ran"), "unclear error: {err}");
        // Exactly one source.
        let err = run_fails(&[
            "restore",
            "create",
            "x",
            "--from-schedule",
            "a",
            "--from-backup",
            "b",
            "--kubeconfig",
            &kc2,
            "--location",
            &loc.url,
        ])?;
        ensure!(err.contains("cannot be used with"), "unclear error: {err}");
        Ok(())
    }
    .await;
    delete_namespace(&c2, &moved).await?;
    ns.delete().await?;
    checks
}

/// The names of the directories directly in `dir`, sorted.
fn subdirectories(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Every kind of record we write (a backup, a restore, an etcd snapshot) leaves the folder a
/// cluster's Velero BSL points at (`velero/`) with Velero's own folders only, as Velero's
/// `IsValid` requires. Then the layout before `velero/`: backups moved back to the old place
/// are not listed, a warning names the command, and `location migrate-layout` moves them
/// into `velero/` intact.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_we_write_passes_veleros_check_and_the_old_layout_moves() -> Result<()> {
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let loc = Location::new()?;
    let ns = populated_namespace(&c1, "bk-layout").await?;
    let name = unique_name("bk", "layout");
    let copy = format!("{}-copy", ns.name);
    let etcd = backup_etcd::testing::EtcdServer::start().await?;
    let checks = async {
        create_backup(&loc, &name, &ns.name)?;
        let restore = unique_name("rs", "layout");
        run_ok(&[
            "restore",
            "create",
            &restore,
            "--from-backup",
            &name,
            "--kubeconfig",
            &kubeconfig("c1")?,
            "--location",
            &loc.url,
            "--namespace-mapping",
            &format!("{}:{copy}", ns.name),
        ])?;
        run_ok(&[
            "etcd",
            "snapshot",
            "--endpoints",
            etcd.endpoint(),
            "--location",
            &loc.url,
            "--name",
            "layout",
        ])?;

        let scope = loc.dir.path().join("default/local");
        assert_eq!(subdirectories(&scope)?, ["etcd-snapshots", "velero"]);
        let cluster = backup_velero::in_cluster::InClusterConfig::new("default", "local")?;
        let prefix = backup_velero::in_cluster::translate::velero_prefix(&cluster, None)?;
        let top = subdirectories(&loc.dir.path().join(&prefix))?;
        assert_eq!(top, ["backups", "restores"], "under {prefix}");
        let rejected = backup_velero::format::bsl_layout::invalid_top_level_dirs(
            top.iter().map(|d| d.as_str()),
        );
        assert!(
            rejected.is_empty(),
            "Velero would reject {rejected:?} under {prefix}"
        );

        // The layout before `velero/`: Velero's folders directly in the cluster's folder.
        for dir in ["backups", "restores"] {
            std::fs::rename(scope.join("velero").join(dir), scope.join(dir))?;
        }
        let out = backupctl(&["backup", "list", "--location", &loc.url, "-o", "json"]);
        ensure!(out.status.success(), "list failed: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "[]");
        assert!(
            stderr(&out).contains("backupctl location migrate-layout"),
            "{}",
            stderr(&out)
        );
        let dry = run_ok(&[
            "location",
            "migrate-layout",
            &loc.url,
            "--all-clusters",
            "--dry-run",
            "-o",
            "json",
        ])?;
        let dry: serde_json::Value = serde_json::from_str(&dry)?;
        assert_eq!(dry[0]["scope"], "default/local", "{dry}");
        assert_eq!(
            dry[0]["legacyFolders"],
            serde_json::json!(["backups", "restores"])
        );
        assert_eq!(dry[0]["moved"], 0, "{dry}");
        assert!(
            scope.join("backups").join(&name).is_dir(),
            "a dry run moved files"
        );

        let done = run_ok(&[
            "location",
            "migrate-layout",
            &loc.url,
            "--all-clusters",
            "-o",
            "json",
        ])?;
        let done: serde_json::Value = serde_json::from_str(&done)?;
        assert_eq!(done[0]["moved"], 2, "{done}");
        assert_eq!(subdirectories(&scope)?, ["etcd-snapshots", "velero"]);
        let rows = list(&loc)?;
        let row = listed(&rows, &name).with_context(|| format!("{name} not listed: {rows:?}"))?;
        assert_eq!(row["phase"], "Completed", "{row}");
        run_ok(&["backup", "verify", &name, "--location", &loc.url])?;
        let restores = run_ok(&["restore", "list", "--location", &loc.url, "-o", "json"])?;
        assert!(restores.contains(&restore), "{restores}");
        Ok(())
    }
    .await;
    delete_namespace(&c1, &copy).await?;
    ns.delete().await?;
    checks
}

/// `restore list -o json`: the row of restore `name`.
fn restore_row(loc: &Location, name: &str) -> Result<serde_json::Value> {
    let out = run_ok(&["restore", "list", "--location", &loc.url, "-o", "json"])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    listed(&rows, name)
        .cloned()
        .with_context(|| format!("restore {name} is not listed: {out}"))
}

/// A restore killed mid-way is not left invisible: while its signs of life are fresh it is
/// listed without a phase (it may be running elsewhere); once they are older than the window
/// (aged here on disk, as time would age them), the next read records it Failed, with a
/// committed record saying why.
#[tokio::test(flavor = "multi_thread")]
async fn killing_a_running_restore_records_it_failed_once_its_signs_of_life_stop() -> Result<()> {
    const OBJECTS: usize = 3000;
    let env = tests::shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let loc = Location::new()?;
    let ns = TestNamespace::create(&c1, "rs-kill").await?;
    let target = format!("{}-cut", ns.name);
    let name = unique_name("bk", "rs-kill");
    let restore = unique_name("rs", "kill");
    let result = async {
        fill_with_config_maps(&c1, &ns.name, OBJECTS).await?;
        create_backup(&loc, &name, &ns.name)?;
        let mut child = backupctl_command()
            .args([
                "restore",
                "create",
                &restore,
                "--from-backup",
                &name,
                "--kubeconfig",
                &kubeconfig("c2")?,
                "--location",
                &loc.url,
                "--namespace-mapping",
                &format!("{}:{target}", ns.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Killed once it has created objects in the target cluster.
        let created: Api<ConfigMap> = Api::namespaced(c2.clone(), &target);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("backupctl exited ({status}) before it could be killed");
            }
            let some = kube::api::ListParams::default().limit(1);
            if created.list(&some).await.is_ok_and(|l| !l.items.is_empty()) {
                break;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "no object was restored in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill()?;
        let status = child.wait()?;
        let record = loc
            .dir
            .path()
            .join("default/local/velero/restores")
            .join(&restore);
        ensure!(
            !record.join("backup-manifest.json").exists(),
            "the restore of {OBJECTS} ConfigMaps finished before the kill ({status}); use more \
             objects so the kill lands mid-restore"
        );
        let beats: Vec<PathBuf> = std::fs::read_dir(&record)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        ensure!(!beats.is_empty(), "no sign of life in {}", record.display());

        let fresh = restore_row(&loc, &restore)?;
        assert!(
            fresh["phase"].is_null(),
            "judged before its window passed: {fresh}"
        );

        let long_ago = std::time::SystemTime::now() - Duration::from_secs(600);
        for beat in &beats {
            std::fs::File::options()
                .write(true)
                .open(beat)?
                .set_modified(long_ago)?;
        }
        let gone = restore_row(&loc, &restore)?;
        assert_eq!(gone["phase"], "Failed", "{gone}");
        let why = gone["errors"][0].as_str().unwrap_or_default();
        assert!(why.contains("stopped before it finished"), "{gone}");
        // Recorded once, with a manifest, and read back the same by a later reader.
        assert!(record.join("backup-manifest.json").is_file());
        assert!(record.join("backup-fleet-restore-status.json").is_file());
        let again = run_ok(&[
            "restore",
            "describe",
            &restore,
            "--location",
            &loc.url,
            "-o",
            "json",
        ])?;
        assert!(again.contains("stopped before it finished"), "{again}");
        Ok(())
    }
    .await;
    delete_namespace(&c2, &target).await?;
    ns.delete().await?;
    result
}
