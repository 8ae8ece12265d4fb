//! etcd snapshots on write-once storage: taking, rotating and restoring them never writes a
//! stored key twice, so they can live in an object-lock (WORM) bucket; an immutable bucket's
//! refusal to delete is reported by rotation, not hidden.

mod common;

use std::sync::Arc;

use backup_core::retention::KeepCount;
use backup_etcd::testing::{EtcdServer, free_port};
use backup_etcd::{MemberOptions, Naming, RestoreRequest, SnapshotRequest, restore, take_snapshot};
use backup_storage::Repository;
use backup_storage::object_store::memory::InMemory;
use backup_storage::write_once::WriteOnceStore;

fn scheduled(at: &str, keep: u32) -> SnapshotRequest {
    SnapshotRequest {
        naming: Naming::Scheduled {
            at: at.parse().unwrap(),
        },
        keep: Some(KeepCount::new(keep).unwrap()),
        ..SnapshotRequest::one_shot("nightly")
    }
}

#[tokio::test]
async fn snapshots_rotation_and_restore_write_every_key_once() {
    let source = EtcdServer::start().await.unwrap();
    let mut client = source.client().await.unwrap();
    common::write_all(&mut client, &common::test_data(500, 3)).await;
    let store = Arc::new(WriteOnceStore::new(Arc::new(InMemory::new())));
    let repo = Repository::new(store.clone());

    let mut last = None;
    for (i, at) in [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        let outcome = take_snapshot(&repo, &source.connection(), &scheduled(at, 2))
            .await
            .unwrap_or_else(|e| panic!("snapshot {i} on write-once storage: {e}"));
        assert!(outcome.pruned.refused.is_empty());
        last = Some(outcome.manifest.name);
    }
    // Restoring reads only; it must not write anything either.
    let written = store.keys_written();
    let target = tempfile::tempdir().unwrap();
    let peer = format!("http://127.0.0.1:{}", free_port().unwrap());
    restore(
        &repo,
        &RestoreRequest {
            backup: last.unwrap(),
            data_dir: target.path().join("member"),
            member: MemberOptions {
                name: Some("restored".into()),
                initial_cluster: Some(format!("restored={peer}")),
                initial_cluster_token: Some("t".into()),
                initial_advertise_peer_urls: Some(peer),
            },
            tool: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(store.keys_written(), written, "a restore writes nothing");
}

#[tokio::test]
async fn rotation_on_an_immutable_bucket_reports_what_it_could_not_delete() {
    let source = EtcdServer::start().await.unwrap();
    let store = Arc::new(WriteOnceStore::new(Arc::new(InMemory::new())).refusing_deletes());
    let repo = Repository::new(store);
    for at in ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"] {
        let outcome = take_snapshot(&repo, &source.connection(), &scheduled(at, 1))
            .await
            .unwrap();
        if at.starts_with("2026-01-02") {
            assert!(outcome.pruned.deleted.is_empty());
            let (name, refusal) = &outcome.pruned.refused[0];
            assert_eq!(name.as_str(), "nightly-20260101000000");
            let message = refusal.to_string();
            assert!(message.contains("refused to delete"), "{message}");
            assert!(message.contains("retention period"), "{message}");
        }
    }
    let listed = backup_etcd::list_snapshots(&repo, false).await.unwrap();
    assert_eq!(listed.len(), 2, "nothing pretended deleted");
}
