//! Bad input and faults: each gives a clear, typed error and loses nothing.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use backup_etcd::testing::{EtcdServer, free_port};
use backup_etcd::{
    EtcdConnection, EtcdError, MemberOptions, RestoreRequest, SnapshotRequest, list_snapshots,
    restore, take_snapshot,
};
use backup_storage::testing::{ACCESS_KEY, SECRET_KEY, find_binary};
use backup_storage::{BackupName, Repository, StorageError, UploadOptions};

fn file_repo(dir: &std::path::Path) -> Repository {
    Repository::open(&format!("file://{}", dir.display()), &BTreeMap::new()).unwrap()
}

fn connection(endpoint: &str) -> EtcdConnection {
    EtcdConnection {
        endpoints: vec![endpoint.to_string()],
        ..EtcdConnection::default()
    }
}

fn restore_request(backup: &str, data_dir: std::path::PathBuf) -> RestoreRequest {
    RestoreRequest {
        backup: BackupName::new(backup).unwrap(),
        data_dir,
        member: MemberOptions::default(),
        tool: None,
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
    let err = take_snapshot(
        &file_repo(dir.path()),
        &connection(&endpoint),
        &SnapshotRequest::one_shot("x"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&endpoint) && message.contains("unreachable"),
        "{message}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "storage was touched"
    );
}

#[tokio::test]
async fn several_endpoints_report_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let a = format!("http://127.0.0.1:{}", free_port().unwrap());
    let mut conn = connection(&a);
    conn.endpoints.push("not-a-url".into());
    let err = take_snapshot(
        &file_repo(dir.path()),
        &conn,
        &SnapshotRequest::one_shot("x"),
    )
    .await
    .unwrap_err();
    let EtcdError::AllEndpointsFailed { failures } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(failures[1], EtcdError::InvalidEndpoint { .. }));
    assert!(err.to_string().contains("not-a-url"), "{err}");
}

#[tokio::test]
async fn an_http_listener_is_not_etcd() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let err = take_snapshot(
        &file_repo(dir.path()),
        &connection(&endpoint),
        &SnapshotRequest::one_shot("x"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EtcdError::NotEtcd { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("did not answer as an etcd v3 server"),
        "{err}"
    );
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[tokio::test]
async fn a_projects_endpoint_in_a_denied_range_is_never_dialled() {
    // The platform denies loopback; the endpoint is named `localhost`, so only the address
    // it resolves to can refuse it. The listener stands for whatever the project aimed at.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let policy = backup_net::AddressPolicy::with_denied(
        backup_net::AddressPolicy::parse_cidrs("127.0.0.0/8,::1").unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    for endpoint in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
        "http://169.254.169.254:2379".to_string(),
    ] {
        let connection = EtcdConnection {
            addresses: Some(std::sync::Arc::new(policy.clone())),
            ..connection(&endpoint)
        };
        let err = take_snapshot(
            &file_repo(dir.path()),
            &connection,
            &SnapshotRequest::one_shot("s"),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, EtcdError::AddressNotAllowed { .. }),
            "{endpoint}: {err}"
        );
        assert!(err.to_string().contains(&endpoint), "{err}");
    }
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the listener was reached"
    );
}

#[tokio::test]
async fn invalid_names_and_levels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conn = connection("http://127.0.0.1:1");
    let err = take_snapshot(
        &file_repo(dir.path()),
        &conn,
        &SnapshotRequest::one_shot("Bad_Name"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EtcdError::InvalidName { .. }), "{err:?}");
    assert!(err.to_string().contains("Bad_Name"), "{err}");
    let request = SnapshotRequest {
        compression_level: 30,
        ..SnapshotRequest::one_shot("ok")
    };
    let err = take_snapshot(&file_repo(dir.path()), &conn, &request)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EtcdError::InvalidCompressionLevel { level: 30 }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_corruption_missing_backups_and_non_empty_dirs() {
    let server = EtcdServer::start().await.unwrap();
    let mut client = server.client().await.unwrap();
    common::write_all(&mut client, &common::test_data(500, 7)).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = file_repo(dir.path());
    take_snapshot(
        &repo,
        &server.connection(),
        &SnapshotRequest::one_shot("good"),
    )
    .await
    .unwrap();
    take_snapshot(
        &repo,
        &server.connection(),
        &SnapshotRequest::one_shot("flipped"),
    )
    .await
    .unwrap();
    let target = tempfile::tempdir().unwrap();

    // A missing backup.
    let err = restore(&repo, &restore_request("absent", target.path().join("a")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EtcdError::Storage(StorageError::BackupNotFound { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("`absent` not found"), "{err}");

    // A non-empty data dir: refused, and its content is untouched.
    let busy = target.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep-me"), b"precious").unwrap();
    let err = restore(&repo, &restore_request("good", busy.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::DataDirNotEmpty { .. }), "{err:?}");
    assert!(err.to_string().contains("busy"), "{err}");
    assert_eq!(std::fs::read(busy.join("keep-me")).unwrap(), b"precious");

    // One flipped byte in the stored snapshot.
    let stored = dir.path().join("etcd-snapshots/flipped/snapshot.db.zst");
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&stored, bytes).unwrap();
    let out = target.path().join("from-flipped");
    let err = restore(&repo, &restore_request("flipped", out.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EtcdError::Storage(StorageError::ChecksumMismatch { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("SHA-256"), "{err}");
    assert!(
        !out.exists(),
        "a refused restore must not create the data dir"
    );
    let leftovers: Vec<_> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "staging left behind: {leftovers:?}");

    // The listing flags it too, and the intact one still restores (into an empty dir).
    let listed = list_snapshots(&repo, true).await.unwrap();
    let flipped = listed.iter().find(|s| s.name == "flipped").unwrap();
    assert!(
        matches!(&flipped.checksum, backup_etcd::ChecksumState::Bad(m) if m.contains("SHA-256"))
    );
    let empty = target.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    restore(&repo, &restore_request("good", empty.clone()))
        .await
        .unwrap();
    assert!(empty.join("member/wal").is_dir());

    // A manifest whose recorded revision is no number: said so by the listing and refused by a
    // restore, never shown or restored as "revision unknown".
    let manifest_path = dir.path().join("etcd-snapshots/good/backup-manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["attributes"]["etcd.revision"] = serde_json::json!("twelve");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let listed = list_snapshots(&repo, false).await.unwrap();
    let good = listed.iter().find(|s| s.name == "good").unwrap();
    assert!(
        matches!(&good.checksum, backup_etcd::ChecksumState::Bad(m)
            if m.contains("etcd.revision") && m.contains("\"twelve\"")),
        "{good:?}"
    );
    let out = target.path().join("from-damaged-manifest");
    let err = restore(&repo, &restore_request("good", out.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::NotASnapshot { .. }), "{err:?}");
    assert!(err.to_string().contains("not a number"), "{err}");
    assert!(!out.exists());
}

/// s3s-fs on a root we own, so it can be killed and restarted on the same data.
struct S3Process {
    child: Child,
    port: u16,
}

impl S3Process {
    fn start(root: &std::path::Path, port: u16) -> Self {
        let child = Command::new(find_binary().unwrap())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn repo(&self) -> Repository {
        let options = BTreeMap::from([
            (
                "s3Url".to_string(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("region".to_string(), "us-east-1".to_string()),
            ("s3ForcePathStyle".to_string(), "true".to_string()),
            ("access_key_id".to_string(), ACCESS_KEY.to_string()),
            ("secret_access_key".to_string(), SECRET_KEY.to_string()),
        ]);
        Repository::open("s3://etcd/fleet", &options).unwrap()
    }
}

impl Drop for S3Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_s3_server_mid_upload_leaves_no_listed_backup() {
    let server = EtcdServer::start().await.unwrap();
    let mut client = server.client().await.unwrap();
    common::write_all(&mut client, &common::test_data(10_000, 3)).await;

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etcd")).unwrap();
    let port = free_port().unwrap();
    let s3 = std::sync::Arc::new(std::sync::Mutex::new(Some(S3Process::start(
        root.path(),
        port,
    ))));
    let repo = s3
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .repo()
        .with_upload_options(UploadOptions {
            part_size: 5 * 1024 * 1024,
            max_parts_in_flight: 1,
        });
    let killer = std::sync::Arc::clone(&s3);
    let request = SnapshotRequest {
        progress: Some(std::sync::Arc::new(
            move |p: backup_etcd::SnapshotProgress| {
                if p.received * 2 > p.total {
                    // Dropping the process handle kills the server.
                    killer.lock().unwrap().take();
                }
            },
        )),
        ..SnapshotRequest::one_shot("interrupted")
    };
    let err = take_snapshot(&repo, &server.connection(), &request)
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::Storage(_)), "{err:?}");
    assert!(s3.lock().unwrap().is_none(), "the server was never killed");

    let restarted = S3Process::start(root.path(), port);
    let listed = list_snapshots(&restarted.repo(), false).await.unwrap();
    assert!(
        listed.is_empty(),
        "an interrupted upload is listed: {listed:?}"
    );
}
