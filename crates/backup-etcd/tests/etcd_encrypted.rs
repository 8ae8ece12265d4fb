//! Encrypted etcd snapshots against a real etcd 3.4: stored encrypted (age), listed and verified
//! without keys, restored only with a matching identity, refused with nothing created when the
//! identity is missing or wrong or the ciphertext was altered, and readable across a key
//! rotation.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use backup_etcd::testing::EtcdServer;
use backup_etcd::{
    ChecksumState, EtcdError, RestoreRequest, SnapshotRequest, list_snapshots, restore,
    take_snapshot,
};
use backup_storage::{BackupName, Encryption, Identities, Repository, StorageError};
use sha2::{Digest, Sha256};

fn file_repo(dir: &Path) -> Repository {
    Repository::open(&format!("file://{}", dir.display()), &BTreeMap::new()).unwrap()
}

fn encryption_to(identities: &Identities) -> Encryption {
    Encryption::new(identities.recipients()).unwrap()
}

fn request(backup: &str, data_dir: std::path::PathBuf) -> RestoreRequest {
    RestoreRequest {
        backup: BackupName::new(backup).unwrap(),
        data_dir,
        member: Default::default(),
        tool: None,
    }
}

/// Everything in `dir`, so a refused restore can be shown to have created nothing.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_snapshots_restore_only_with_their_identity_across_a_key_rotation() {
    let server = EtcdServer::start().await.unwrap();
    let mut client = server.client().await.unwrap();
    let before = common::test_data(2_000, 5);
    common::write_all(&mut client, &before).await;
    let dir = tempfile::tempdir().unwrap();
    let old_key = Identities::generate();
    let new_key = Identities::generate();

    // The old key takes one snapshot; after the rotation the new key takes the next.
    let old = take_snapshot(
        &file_repo(dir.path()).with_encryption(encryption_to(&old_key)),
        &server.connection(),
        &SnapshotRequest::one_shot("before-rotation"),
    )
    .await
    .unwrap();
    let changes = common::test_data(100, 6);
    common::write_all(&mut client, &changes).await;
    let mut after = before.clone();
    after.extend(changes);
    assert!(after != before);
    let new = take_snapshot(
        &file_repo(dir.path()).with_encryption(encryption_to(&new_key)),
        &server.connection(),
        &SnapshotRequest::one_shot("after-rotation"),
    )
    .await
    .unwrap();
    drop(server);
    for (outcome, key) in [(&old, &old_key), (&new, &new_key)] {
        let m = &outcome.manifest;
        assert!(m.is_encrypted());
        assert_eq!(m.recipients(), key.fingerprints());
    }
    // Stored bytes are an age file, neither zstd nor the database.
    let stored = dir
        .path()
        .join("etcd-snapshots/before-rotation/snapshot.db.zst");
    assert!(
        std::fs::read(&stored)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );

    // Listing verifies the stored checksums without any key.
    let plain = file_repo(dir.path());
    let listed = list_snapshots(&plain, true).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|s| s.checksum == ChecksumState::Ok),
        "{listed:?}"
    );

    // Without an identity, or with the other key: refused, naming the fingerprint needed,
    // and nothing is created next to the data directory.
    let target = tempfile::tempdir().unwrap();
    let err = restore(&plain, &request("before-rotation", target.path().join("m")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EtcdError::Storage(StorageError::IdentityRequired { .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(old_key.fingerprints()[0].as_str()),
        "{err}"
    );
    let with_new = file_repo(dir.path()).with_identities(new_key.clone());
    let err = restore(
        &with_new,
        &request("before-rotation", target.path().join("m")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            EtcdError::Storage(StorageError::NoMatchingIdentity { .. })
        ),
        "{err:?}"
    );
    assert!(
        entries(target.path()).is_empty(),
        "{:?}",
        entries(target.path())
    );

    // Each key restores its own snapshot; the identity file holding both restores either.
    let with_old = file_repo(dir.path()).with_identities(old_key.clone());
    let (restored, _) =
        common::restore_and_read(&with_old, &BackupName::new("before-rotation").unwrap()).await;
    assert!(
        restored == before,
        "the old snapshot restores with the old key"
    );
    let mut both = old_key.clone();
    both.extend(new_key.clone());
    let with_both = file_repo(dir.path()).with_identities(both);
    let (restored, _) =
        common::restore_and_read(&with_both, &BackupName::new("after-rotation").unwrap()).await;
    assert!(
        restored == after,
        "the new snapshot restores with the new key"
    );

    // One flipped byte, with the manifest's checksum forged to match: age refuses it, and
    // nothing is left behind.
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();
    let manifest_path = dir
        .path()
        .join("etcd-snapshots/before-rotation/backup-manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["artifacts"][0]["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let err = restore(
        &with_old,
        &request("before-rotation", target.path().join("m")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EtcdError::Storage(StorageError::Decrypt { .. })),
        "{err:?}"
    );
    assert!(
        entries(target.path()).is_empty(),
        "{:?}",
        entries(target.path())
    );
}
