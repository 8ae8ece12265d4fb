//! Bad input gets a typed error whose message says what to fix — against real processes.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use backup_storage::testing::S3sFs;
use backup_storage::{Availability, BackupName, Location, Repository, StorageError};

fn s3(_server: &S3sFs, bucket: &str, options: BTreeMap<String, String>) -> Repository {
    let store = Location::parse(&format!("s3://{bucket}/prefix"))
        .unwrap()
        .open_with_env(&options, |_| None)
        .unwrap();
    Repository::new(store)
}

fn start() -> S3sFs {
    S3sFs::start().unwrap_or_else(|e| panic!("these tests need s3s-fs: {e}"))
}

#[test]
fn unknown_scheme_is_named_with_alternatives() {
    let err = Repository::open("ftp://x", &BTreeMap::new()).unwrap_err();
    assert!(
        matches!(err, StorageError::UnsupportedScheme { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`ftp`") && msg.contains("s3://<bucket>"),
        "{msg}"
    );
}

#[test]
fn invalid_backup_names_are_rejected() {
    for bad in ["..", "/abs", "%2e%2e", "a/b", ""] {
        let err = BackupName::new(bad).unwrap_err();
        assert!(matches!(err, StorageError::InvalidName { .. }), "{bad}");
        assert!(err.to_string().contains("use 1-253 letters"), "{err}");
    }
}

#[tokio::test]
async fn missing_bucket_is_reported() {
    let server = start();
    let repo = s3(&server, "no-such-bucket", server.options());
    match repo.probe().await {
        a @ Availability::BucketMissing { .. } => {
            assert!(a.to_string().contains("create it"), "{a}");
        }
        other => panic!("expected BucketMissing, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_credentials_are_access_denied() {
    let server = start();
    server.create_bucket("bkt").unwrap();
    let mut options = server.options();
    options.insert("secret_access_key".into(), "wrong-secret".into());
    match s3(&server, "bkt", options.clone()).probe().await {
        a @ Availability::AccessDenied { .. } => {
            assert!(a.to_string().contains("access key"), "{a}")
        }
        other => panic!("expected AccessDenied for a wrong secret, got {other:?}"),
    }
    options.insert("access_key_id".into(), "unknown-key".into());
    match s3(&server, "bkt", options).probe().await {
        Availability::AccessDenied { message } => assert!(!message.is_empty()),
        other => panic!("expected AccessDenied for an unknown key, got {other:?}"),
    }
}

#[tokio::test]
async fn closed_port_is_unreachable_fast() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let options = BTreeMap::from([
        ("s3Url".to_string(), format!("http://127.0.0.1:{port}")),
        ("access_key_id".to_string(), "k".to_string()),
        ("secret_access_key".to_string(), "s".to_string()),
    ]);
    let repo = Repository::new(
        Location::parse("s3://bkt/p")
            .unwrap()
            .open_with_env(&options, |_| None)
            .unwrap(),
    );
    let started = Instant::now();
    let availability = repo.probe().await;
    let elapsed = started.elapsed();
    assert!(
        matches!(availability, Availability::Unreachable { .. }),
        "{availability:?}"
    );
    assert!(
        availability.to_string().contains("endpoint"),
        "{availability}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

/// Makes a directory refuse new entries for everyone, root included: `chattr +i` (the immutable
/// flag binds root too, unlike permission bits). Undone on drop so the tempdir can be removed.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(dir: &std::path::Path) -> Self {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .expect("chattr (e2fsprogs) is needed to make a directory read-only for root");
        assert!(status.success(), "chattr +i {} failed", dir.display());
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn read_only_file_location_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ro");
    std::fs::create_dir(&root).unwrap();
    let _guard = Immutable::set(&root);
    assert!(
        std::fs::create_dir(root.join("probe-check")).is_err(),
        "the directory must refuse writes for this test to mean anything"
    );
    let repo = Repository::open(&format!("file://{}", root.display()), &BTreeMap::new()).unwrap();
    let availability = repo.probe().await;
    assert!(
        matches!(availability, Availability::ReadOnly { .. }),
        "{availability:?}"
    );
    assert!(
        availability.to_string().contains("read-only"),
        "{availability}"
    );
}
