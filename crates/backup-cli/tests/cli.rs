//! `backupctl` as a user runs it: the real binary, real files, real exit codes.

use std::process::Command;

mod common;

use common::{backupctl, stderr, stdout};

#[test]
fn schedule_next_fires_sunday_midnight_for_weekday_zero() {
    let out = backupctl(&[
        "schedule",
        "next",
        "0 0 * * 0",
        "-n",
        "3",
        "--after",
        "2026-11-18T12:00:00Z",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let times: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let utc: Vec<&str> = times
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["utc"].as_str().unwrap())
        .collect();
    assert_eq!(
        utc,
        [
            "2026-11-22T00:00:00Z",
            "2026-11-29T00:00:00Z",
            "2026-12-06T00:00:00Z"
        ]
    );
}

#[test]
fn schedule_next_every_interval_in_a_table() {
    let out = backupctl(&[
        "schedule",
        "next",
        "@every 20m",
        "-n",
        "2",
        "--after",
        "2026-11-18T12:00:00Z",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("UTC"), "{text}");
    assert!(
        text.contains("2026-11-18T12:20:00Z") && text.contains("2026-11-18T12:40:00Z"),
        "{text}"
    );
}

#[test]
fn an_unparseable_schedule_fails_naming_the_field() {
    let out = backupctl(&["schedule", "next", "61 * * * *"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("61") && err.contains("minute"), "{err}");
}

#[test]
fn an_unknown_time_zone_is_a_clear_error() {
    let out = backupctl(&["schedule", "next", "@daily", "--time-zone", "Mars/Olympus"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown time zone \"Mars/Olympus\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn location_check_on_a_local_directory_is_available() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let out = backupctl(&[
        "location",
        "check",
        &url,
        "--project",
        "p1",
        "--cluster",
        "c1",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report[0]["available"], true);
    assert_eq!(report[0]["scope"], "p1/c1");
    // The sentinel is cleaned up: nothing is left behind in the location.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn location_check_of_an_unknown_scheme_lists_the_supported_ones() {
    let out = backupctl(&["location", "check", "ftp://example/backups"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("ftp") && err.contains("s3://"), "{err}");
}

#[test]
fn location_check_of_an_unreachable_s3_endpoint_exits_one_with_the_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_backupctl"))
        .args(["location", "check", "s3://backups", "-o", "json"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "ak")
        .env("AWS_SECRET_ACCESS_KEY", "sk")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report[0]["available"], false);
    assert_eq!(report[0]["reason"], "Unreachable");
}

#[test]
fn an_s3_location_without_credentials_says_what_to_set_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_backupctl"))
        .args(["backup", "list", "--location", "s3://backups"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no credentials for this location") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(
        !err.contains("169.254.169.254"),
        "the metadata client's retries: {err}"
    );
}

#[test]
fn a_bad_backup_name_is_refused_before_anything_is_read() {
    let out = backupctl(&[
        "backup",
        "create",
        "Bad Name",
        "--location",
        "s3://nowhere/x",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("backup name \"Bad Name\""), "{err}");
    assert!(
        !err.contains("kubeconfig"),
        "checked before the kubeconfig: {err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A committed backup whose `velero-backup.json` is intact (its checksum matches) but is not a
/// Velero Backup: listing must not show it as "Unknown", describing must fail, deleting works.
#[tokio::test]
async fn an_unreadable_velero_backup_json_is_an_error_not_a_default() {
    use backup_storage::{ArtifactName, BackupKind, BackupName, Repository};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let repo = Repository::open(&url, &Default::default())
        .unwrap()
        .scoped_str("default", "local")
        .unwrap();
    let name = BackupName::new("odd").unwrap();
    let mut writer = repo
        .begin_backup(BackupKind::Resources, &name)
        .await
        .unwrap();
    writer
        .put_artifact_bytes(
            &ArtifactName::new("velero-backup.json").unwrap(),
            b"{\"kind\": \"NotABackup\"}".to_vec().into(),
        )
        .await
        .unwrap();
    writer.commit(Default::default(), None).await.unwrap();

    let list = backupctl(&["backup", "list", "--location", &url]);
    assert_eq!(list.status.code(), Some(1), "{}", stderr(&list));
    assert!(!stdout(&list).contains("Unknown"), "{}", stdout(&list));
    assert!(
        stderr(&list).contains("backup odd is unreadable"),
        "{}",
        stderr(&list)
    );
    let describe = backupctl(&["backup", "describe", "odd", "--location", &url]);
    assert!(!describe.status.success());
    let delete = backupctl(&["backup", "delete", "odd", "--location", &url]);
    assert!(delete.status.success(), "{}", stderr(&delete));
    assert!(
        stderr(&delete).contains("unreadable"),
        "{}",
        stderr(&delete)
    );
    let after = backupctl(&["backup", "list", "--location", &url]);
    assert!(after.status.success(), "{}", stderr(&after));
}

/// A file location with a committed backup `name` holding one artifact.
async fn committed(url: &str, name: &str, content: &'static [u8]) {
    use backup_storage::{ArtifactName, BackupKind, BackupName, Repository};
    let repo = Repository::open(url, &Default::default())
        .unwrap()
        .scoped_str("default", "local")
        .unwrap();
    let mut writer = repo
        .begin_backup(BackupKind::Resources, &BackupName::new(name).unwrap())
        .await
        .unwrap();
    writer
        .put_artifact_bytes(
            &ArtifactName::new(format!("{name}.tar.gz")).unwrap(),
            content.to_vec().into(),
        )
        .await
        .unwrap();
    writer.commit(Default::default(), None).await.unwrap();
}

#[tokio::test]
async fn backup_verify_names_each_corrupt_backup_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    committed(&url, "good", b"intact bytes").await;
    committed(&url, "rotten", b"bytes that will rot").await;
    let file = dir
        .path()
        .join("default/local/velero/backups/rotten/rotten.tar.gz");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();

    let one = backupctl(&["backup", "verify", "good", "--location", &url]);
    assert!(one.status.success(), "{}", stderr(&one));
    let all = backupctl(&[
        "backup",
        "verify",
        "--all",
        "--location",
        &url,
        "-o",
        "json",
    ]);
    assert_eq!(all.status.code(), Some(1), "{}", stderr(&all));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&all)).unwrap();
    let bad: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == false)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["rotten"]);
    assert!(
        stderr(&all).contains("corrupt or unreadable: rotten"),
        "{}",
        stderr(&all)
    );
    let neither = backupctl(&["backup", "verify", "--location", &url]);
    assert!(!neither.status.success());
}

#[tokio::test]
async fn location_gc_removes_interrupted_uploads_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    committed(&url, "kept", b"a committed backup").await;
    let orphan = dir.path().join("default/local/velero/backups/cut-off");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("cut-off.tar.gz"), b"half an upload").unwrap();

    let young = backupctl(&["location", "gc", &url, "-o", "json"]);
    assert!(young.status.success(), "{}", stderr(&young));
    assert_eq!(stdout(&young).trim(), "[]", "inside the default 24h grace");
    let dry = backupctl(&[
        "location",
        "gc",
        &url,
        "--grace",
        "0s",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("cut-off"), "{}", stdout(&dry));
    assert!(
        orphan.join("cut-off.tar.gz").exists(),
        "a dry run removes nothing"
    );
    let gc = backupctl(&["location", "gc", &url, "--grace", "0s"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(!orphan.join("cut-off.tar.gz").exists());
    let list = backupctl(&["backup", "verify", "kept", "--location", &url]);
    assert!(
        list.status.success(),
        "the committed backup is untouched: {}",
        stderr(&list)
    );
    let bad = backupctl(&["location", "gc", &url, "--grace", "soon"]);
    assert!(
        stderr(&bad).contains("--grace \"soon\""),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn an_empty_listing_says_where_it_looked_and_where_the_controllers_backups_are() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    for group in ["backup", "restore"] {
        let out = backupctl(&[group, "get", "--location", &url, "-o", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "[]");
        let said = stderr(&out);
        assert!(
            said.contains("project default, cluster local")
                && said.contains("--project <its namespace> --cluster <its name>"),
            "{group}: {said}"
        );
    }
}
