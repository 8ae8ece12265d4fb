//! Snapshot → storage → restore → a new etcd on the restored data, against real processes:
//! etcd 3.4 on 127.0.0.1 and both a file:// and an S3 (s3s-fs) location.

mod common;

use std::collections::BTreeMap;

use backup_etcd::testing::{EtcdConfig, EtcdServer, TestPki};
use backup_etcd::{
    ChecksumState, EtcdError, Naming, SnapshotRequest, attributes, list_snapshots, take_snapshot,
};
use backup_storage::testing::S3sFs;
use backup_storage::{BackupKind, Repository};

async fn round_trip(repo: &Repository) {
    let source = EtcdServer::start().await.unwrap();
    let mut client = source.client().await.unwrap();
    let data = common::test_data(10_000, 42);
    common::write_all(&mut client, &data).await;
    let (written, revision) = common::read_all(&mut client).await;
    assert_eq!(written, data);

    let outcome = take_snapshot(
        repo,
        &source.connection(),
        &SnapshotRequest::one_shot("nightly"),
    )
    .await
    .unwrap();
    let manifest = &outcome.manifest;
    assert_eq!(manifest.name.as_str(), "nightly");
    assert_eq!(manifest.kind, BackupKind::EtcdSnapshot);
    let attr = |k: &str| manifest.attributes.get(k).cloned().unwrap_or_default();
    assert_eq!(attr(attributes::REVISION), revision.to_string());
    assert_eq!(
        attr(attributes::MEMBER_ID),
        format!("{:x}", outcome.member.member_id)
    );
    assert_eq!(
        attr(attributes::CLUSTER_ID),
        format!("{:x}", outcome.member.cluster_id)
    );
    assert_ne!(outcome.member.member_id, 0);
    let db_size: u64 = attr(attributes::SNAPSHOT_SIZE).parse().unwrap();
    assert!(
        db_size > 10 << 20,
        "database of {db_size} bytes is implausibly small"
    );
    assert!(
        manifest.total_size() < db_size,
        "zstd did not shrink the snapshot"
    );

    let listed = list_snapshots(repo, true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].checksum, ChecksumState::Ok);
    assert_eq!(listed[0].revision, Some(revision));

    drop(source);
    let (restored, restored_revision) = common::restore_and_read(repo, &manifest.name).await;
    assert_eq!(restored_revision, revision);
    assert_eq!(restored.len(), data.len());
    assert!(restored == data, "restored keys or values differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_round_trip_through_a_file_location() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        &format!("file://{}", dir.path().display()),
        &BTreeMap::new(),
    )
    .unwrap()
    .scoped_str("proj", "cluster-a")
    .unwrap();
    round_trip(&repo).await;
    // Scoped: the snapshot lives under the cluster's prefix.
    assert!(
        dir.path()
            .join("proj/cluster-a/etcd-snapshots/nightly/snapshot.db.zst")
            .is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_round_trip_through_s3() {
    let s3 = S3sFs::start().unwrap();
    s3.create_bucket("etcd").unwrap();
    let repo = s3.repository("etcd", "fleet").unwrap();
    round_trip(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_works_and_a_foreign_ca_is_refused() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(pki_dir.path(), "").unwrap();
    let other = TestPki::generate(pki_dir.path(), "other-").unwrap();
    let server = EtcdServer::start_with(EtcdConfig {
        tls: Some(pki.clone()),
        ..EtcdConfig::default()
    })
    .await
    .unwrap();
    let mut client = server.client().await.unwrap();
    client.put("/test/tls", "yes").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        &format!("file://{}", dir.path().display()),
        &BTreeMap::new(),
    )
    .unwrap();
    let outcome = take_snapshot(
        &repo,
        &server.connection(),
        &SnapshotRequest::one_shot("tls"),
    )
    .await
    .unwrap();
    assert!(outcome.member.revision >= 2);

    // A CA that did not sign etcd's certificate.
    let mut wrong = server.connection();
    wrong.tls.ca = Some(other.ca.clone());
    let err = take_snapshot(&repo, &wrong, &SnapshotRequest::one_shot("wrong-ca"))
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains(server.endpoint()), "{err}");

    // A client certificate etcd does not trust.
    let mut untrusted = server.connection();
    untrusted.tls.cert = Some(other.client_cert.clone());
    untrusted.tls.key = Some(other.client_key.clone());
    let err = take_snapshot(&repo, &untrusted, &SnapshotRequest::one_shot("untrusted"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EtcdError::Tls { .. } | EtcdError::NotEtcd { .. }),
        "{err:?}"
    );

    // A TLS file that does not exist is named before anything connects.
    let mut missing = server.connection();
    missing.tls.key = Some(pki_dir.path().join("absent.key"));
    let err = take_snapshot(&repo, &missing, &SnapshotRequest::one_shot("missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EtcdError::TlsFile {
                what: "client key",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("absent.key"), "{err}");

    let names: Vec<String> = list_snapshots(&repo, false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["tls"], "failed snapshots must not be listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_names_and_keep_n_rotation_per_configuration() {
    let server = EtcdServer::start().await.unwrap();
    let mut client = server.client().await.unwrap();
    client.put("/test/a", "1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        &format!("file://{}", dir.path().display()),
        &BTreeMap::new(),
    )
    .unwrap();

    let other = take_snapshot(
        &repo,
        &server.connection(),
        &SnapshotRequest::one_shot("hourly"),
    )
    .await
    .unwrap();
    let mut names = Vec::new();
    for (i, at) in [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
        "2026-01-01T03:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        let request = SnapshotRequest {
            naming: Naming::Scheduled {
                at: at.parse().unwrap(),
            },
            keep: Some(backup_core::retention::KeepCount::new(3).unwrap()),
            ..SnapshotRequest::one_shot("nightly")
        };
        let outcome = take_snapshot(&repo, &server.connection(), &request)
            .await
            .unwrap();
        names.push(outcome.manifest.name.to_string());
        assert_eq!(
            outcome.pruned.deleted.len(),
            usize::from(i == 3),
            "round {i}"
        );
        assert!(outcome.pruned.refused.is_empty());
    }
    assert_eq!(names[0], "nightly-20260101000000");

    let deleted = backup_etcd::prune(
        &repo,
        "nightly",
        backup_core::retention::KeepCount::new(2).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(deleted.deleted.len(), 1);
    let mut remaining: Vec<String> = list_snapshots(&repo, false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    remaining.sort();
    assert_eq!(
        remaining,
        [
            other.manifest.name.to_string(),
            names[2].clone(),
            names[3].clone()
        ],
        "prune keeps exactly the newest 2 of `nightly` and never touches `hourly`"
    );
}
