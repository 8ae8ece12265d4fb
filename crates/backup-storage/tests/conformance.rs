//! The one conformance suite every backend passes: memory, local files, a real S3 server
//! (s3s-fs on 127.0.0.1), Azure Blob Storage (Azurite on 127.0.0.1), and write-once storage
//! (any second write of a key fails) on memory and on Azurite. Each check is a generic async fn;
//! the macro at the bottom instantiates all of them per backend.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use backup_storage::object_store::path::Path;
use backup_storage::object_store::{ObjectStoreExt, PutPayload};
use backup_storage::{
    ArtifactName, Availability, BackupKind, BackupName, ENCRYPTED_FORMAT_VERSION, Encryption,
    EncryptionScheme, FORMAT_VERSION, Identities, MANIFEST_FILE, Repository, ScopeSegment,
    StorageError, UploadOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use support::{Fixture, RecordingStore, all_paths, pseudo_random};

fn bname(s: &str) -> BackupName {
    BackupName::new(s).unwrap()
}

fn aname(s: &str) -> ArtifactName {
    ArtifactName::new(s).unwrap()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes and commits a backup with two artifacts; returns their contents.
async fn write_backup(repo: &Repository, kind: BackupKind, name: &str) -> (Vec<u8>, Vec<u8>) {
    let small = format!("small artifact of {name}").into_bytes();
    let big = pseudo_random(300_000, name.len() as u64);
    let mut w = repo.begin_backup(kind, &bname(name)).await.unwrap();
    w.put_artifact_bytes(&aname("meta.json"), Bytes::from(small.clone()))
        .await
        .unwrap();
    w.put_artifact(&aname("data.tar.gz"), &big[..])
        .await
        .unwrap();
    w.commit(BTreeMap::new(), None).await.unwrap();
    (small, big)
}

async fn collect(
    repo: &Repository,
    kind: BackupKind,
    name: &str,
    artifact: &str,
) -> Result<Vec<u8>, StorageError> {
    let mut stream = repo
        .open_artifact(kind, &bname(name), &aname(artifact))
        .await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn round_trip(f: Fixture) {
    let repo = f.repo();
    let kind = BackupKind::EtcdSnapshot;
    let data = pseudo_random(1_234_567, 7);
    let mut w = repo.begin_backup(kind, &bname("snap-1")).await.unwrap();
    let rec = w
        .put_artifact(&aname("snapshot.db"), &data[..])
        .await
        .unwrap();
    assert_eq!(rec.size, data.len() as u64);
    assert_eq!(rec.sha256, sha_hex(&data));
    let attrs = BTreeMap::from([("revision".to_string(), "42".to_string())]);
    let expires: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let committed = w.commit(attrs.clone(), Some(expires)).await.unwrap();

    let manifest = repo.get_manifest(kind, &bname("snap-1")).await.unwrap();
    assert_eq!(manifest, committed);
    assert_eq!(manifest.attributes, attrs);
    assert_eq!(manifest.expires_at, Some(expires));
    assert_eq!(manifest.artifacts, vec![rec]);

    assert_eq!(
        collect(&repo, kind, "snap-1", "snapshot.db").await.unwrap(),
        data
    );
    let mut out = Vec::new();
    repo.download_artifact_to(kind, &bname("snap-1"), &aname("snapshot.db"), &mut out)
        .await
        .unwrap();
    assert_eq!(out, data);
    repo.verify(kind, &bname("snap-1")).await.unwrap();

    // Layout: <kind dir>/<name>/<artifact> and the manifest beside it.
    let paths = all_paths(f.store.as_ref()).await;
    assert_eq!(
        paths,
        vec![
            format!("etcd-snapshots/snap-1/{MANIFEST_FILE}"),
            "etcd-snapshots/snap-1/snapshot.db".to_string()
        ]
    );
    // Kinds do not mix.
    assert!(
        repo.list(BackupKind::Resources)
            .await
            .unwrap()
            .manifests
            .is_empty()
    );

    let err = collect(&repo, kind, "snap-1", "other.db")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::UnknownArtifact { .. }), "{err}");
    assert!(
        err.to_string().contains("snapshot.db"),
        "lists what exists: {err}"
    );
}

async fn manifest_last_and_list_only_committed(f: Fixture) {
    let repo = f.repo();
    let kind = BackupKind::Resources;
    write_backup(&repo, kind, "done").await;

    // Artifacts written but not committed: invisible.
    let mut pending = repo.begin_backup(kind, &bname("pending")).await.unwrap();
    pending
        .put_artifact_bytes(&aname("velero-backup.json"), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let listing = repo.list(kind).await.unwrap();
    let names: Vec<_> = listing
        .manifests
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(names, vec!["done"]);
    assert!(listing.problems.is_empty());
    let err = repo
        .get_manifest(kind, &bname("pending"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BackupNotFound { .. }), "{err}");
    assert!(
        collect(&repo, kind, "pending", "velero-backup.json")
            .await
            .is_err()
    );

    pending.commit(BTreeMap::new(), None).await.unwrap();
    assert_eq!(repo.list(kind).await.unwrap().manifests.len(), 2);

    // A committed name cannot be reused, and two racing writers cannot both commit.
    let err = repo.begin_backup(kind, &bname("done")).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    let w1 = repo.begin_backup(kind, &bname("race")).await.unwrap();
    let w2 = repo.begin_backup(kind, &bname("race")).await.unwrap();
    w1.commit(BTreeMap::new(), None).await.unwrap();
    let err = w2.commit(BTreeMap::new(), None).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");

    // The manifest name is reserved, duplicates are refused.
    let mut w = repo.begin_backup(kind, &bname("x")).await.unwrap();
    let err = w
        .put_artifact_bytes(&aname(MANIFEST_FILE), Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::ReservedArtifactName { .. }),
        "{err}"
    );
    w.put_artifact_bytes(&aname("a"), Bytes::new())
        .await
        .unwrap();
    let err = w
        .put_artifact_bytes(&aname("a"), Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::DuplicateArtifact { .. }),
        "{err}"
    );

    // Abort removes what was written.
    w.abort().await.unwrap();
    assert!(
        !all_paths(f.store.as_ref())
            .await
            .iter()
            .any(|p| p.starts_with("velero/backups/x/"))
    );
}

async fn corrupt_manifest_is_reported(f: Fixture) {
    let repo = f.repo();
    let kind = BackupKind::Resources;
    write_backup(&repo, kind, "good").await;
    let path = Path::from(format!("velero/backups/bad/{MANIFEST_FILE}"));
    f.store
        .put(&path, PutPayload::from_static(b"{ nope"))
        .await
        .unwrap();
    let listing = repo.list(kind).await.unwrap();
    assert_eq!(listing.manifests.len(), 1);
    assert_eq!(listing.problems.len(), 1);
    assert_eq!(listing.problems[0].0.as_str(), "bad");
    assert!(matches!(
        listing.problems[0].1,
        StorageError::CorruptManifest { .. }
    ));
}

async fn delete_removes_everything_manifest_first(f: Fixture) {
    let deleted = Arc::new(Mutex::new(Vec::new()));
    let recording = RecordingStore {
        inner: Arc::clone(&f.store),
        deleted: Arc::clone(&deleted),
    };
    let repo = Repository::new(Arc::new(recording));
    let kind = BackupKind::Resources;
    write_backup(&repo, kind, "doomed").await;
    write_backup(&repo, kind, "doomed-not").await;
    // A Velero file beside ours belongs to the backup too.
    f.store
        .put(
            &Path::from("velero/backups/doomed/velero-backup.json"),
            PutPayload::from_static(b"{}"),
        )
        .await
        .unwrap();

    repo.delete(kind, &bname("doomed")).await.unwrap();
    let order = deleted.lock().unwrap().clone();
    assert_eq!(
        order.first().map(String::as_str),
        Some("velero/backups/doomed/backup-manifest.json")
    );
    assert_eq!(order.len(), 4, "{order:?}");
    let remaining = all_paths(f.store.as_ref()).await;
    assert!(
        remaining
            .iter()
            .all(|p| p.starts_with("velero/backups/doomed-not/")),
        "{remaining:?}"
    );
    assert_eq!(remaining.len(), 3);

    // Idempotent.
    repo.delete(kind, &bname("doomed")).await.unwrap();
    let err = repo.get_manifest(kind, &bname("doomed")).await.unwrap_err();
    assert!(matches!(err, StorageError::BackupNotFound { .. }));
    assert_eq!(repo.list(kind).await.unwrap().manifests.len(), 1);
}

async fn scoping_isolates_clusters(f: Fixture) {
    let base = f.repo();
    let project = ScopeSegment::new("proj-a").unwrap();
    let c1 = base.scoped(&project, &ScopeSegment::cluster("cluster-1").unwrap());
    let c2 = base.scoped(&project, &ScopeSegment::cluster("cluster-2").unwrap());
    let kind = BackupKind::Resources;
    write_backup(&c1, kind, "same-name").await;

    assert!(c2.list(kind).await.unwrap().manifests.is_empty());
    let err = c2
        .get_manifest(kind, &bname("same-name"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BackupNotFound { .. }));
    c2.delete(kind, &bname("same-name")).await.unwrap();
    assert_eq!(c1.list(kind).await.unwrap().manifests.len(), 1);
    c1.verify(kind, &bname("same-name")).await.unwrap();

    let paths = all_paths(f.store.as_ref()).await;
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with("proj-a/cluster-1/velero/backups/same-name/")),
        "{paths:?}"
    );
    assert!(base.list(kind).await.unwrap().manifests.is_empty());
    // Unvalidated input cannot even build a scope.
    for bad in ["..", "/abs", "%2e%2e", "a/b", ""] {
        assert!(base.scoped_str("proj-a", bad).is_err(), "{bad}");
        assert!(base.scoped_str(bad, "c").is_err(), "{bad}");
    }
}

async fn probe_available(f: Fixture) {
    let repo = f.repo().scoped_str("p", "c").unwrap();
    assert_eq!(repo.probe().await, Availability::Available);
    assert!(
        all_paths(f.store.as_ref()).await.is_empty(),
        "the sentinel is deleted"
    );
}

async fn checksums_are_verified(f: Fixture) {
    let repo = f.repo();
    let kind = BackupKind::Resources;
    let (_, big) = write_backup(&repo, kind, "b").await;
    let path = Path::from("velero/backups/b/data.tar.gz");

    let mut flipped = big.clone();
    flipped[big.len() / 2] ^= 0x01;
    f.raw.put(&path, PutPayload::from(flipped)).await.unwrap();
    let mut stream = repo
        .open_artifact(kind, &bname("b"), &aname("data.tar.gz"))
        .await
        .unwrap();
    let mut good_bytes = 0;
    let err = loop {
        match stream.next().await.expect("stream must end with an error") {
            Ok(chunk) => good_bytes += chunk.len(),
            Err(e) => break e,
        }
    };
    assert!(
        good_bytes < big.len(),
        "the last chunk is withheld on mismatch"
    );
    match &err {
        StorageError::ChecksumMismatch {
            artifact,
            expected,
            actual,
            ..
        } => {
            assert_eq!(artifact, "data.tar.gz");
            assert_eq!(expected, &sha_hex(&big));
            assert_ne!(expected, actual);
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(err.to_string().contains("do not restore"), "{err}");
    assert!(matches!(
        repo.verify(kind, &bname("b")).await,
        Err(StorageError::ChecksumMismatch { .. })
    ));

    f.raw
        .put(&path, PutPayload::from(big[..1000].to_vec()))
        .await
        .unwrap();
    let err = collect(&repo, kind, "b", "data.tar.gz").await.unwrap_err();
    assert!(
        matches!(err, StorageError::Truncated { expected, actual: 1000, .. } if expected == big.len() as u64),
        "{err}"
    );
    let mut longer = big.clone();
    longer.push(0);
    f.raw.put(&path, PutPayload::from(longer)).await.unwrap();
    let err = collect(&repo, kind, "b", "data.tar.gz").await.unwrap_err();
    assert!(matches!(err, StorageError::Oversized { .. }), "{err}");

    f.raw.delete(&path).await.unwrap();
    let err = repo.verify(kind, &bname("b")).await.unwrap_err();
    match &err {
        StorageError::MissingArtifact { backup, artifact } => {
            assert_eq!((backup.as_str(), artifact.as_str()), ("b", "data.tar.gz"));
        }
        other => panic!("expected MissingArtifact, got {other}"),
    }
    assert!(err.to_string().contains("missing from storage"), "{err}");
}

async fn multipart_streams_large_artifacts(f: Fixture) {
    let options = UploadOptions {
        part_size: 5 * 1024 * 1024,
        max_parts_in_flight: 2,
    };
    let repo = f.repo().with_upload_options(options);
    let kind = BackupKind::EtcdSnapshot;
    let data = pseudo_random(40 * 1024 * 1024 + 123, 99);
    let mut w = repo.begin_backup(kind, &bname("big")).await.unwrap();
    let rec = w
        .put_artifact(&aname("reader.bin"), &data[..])
        .await
        .unwrap();
    assert_eq!(
        (rec.size, rec.sha256.clone()),
        (data.len() as u64, sha_hex(&data))
    );

    // A stream of odd-sized chunks, and exactly one part.
    let chunks: Vec<std::io::Result<Bytes>> = data[..12 * 1024 * 1024]
        .chunks(777_777)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let rec2 = w
        .put_artifact_stream(&aname("stream.bin"), futures::stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(rec2.sha256, sha_hex(&data[..12 * 1024 * 1024]));
    let exact = &data[..5 * 1024 * 1024];
    let rec3 = w.put_artifact(&aname("exact.bin"), exact).await.unwrap();
    assert_eq!(rec3.sha256, sha_hex(exact));
    w.commit(BTreeMap::new(), None).await.unwrap();

    let mut out = Vec::new();
    repo.download_artifact_to(kind, &bname("big"), &aname("reader.bin"), &mut out)
        .await
        .unwrap();
    assert!(out == data, "40 MiB round trip differs");
    repo.verify(kind, &bname("big")).await.unwrap();

    // A failing reader aborts the upload: nothing visible, the error names the artifact.
    struct Failing(usize);
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("disk on fire")));
            }
            let n = buf.remaining().min(self.0);
            buf.put_slice(&vec![7u8; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let mut w = repo.begin_backup(kind, &bname("failing")).await.unwrap();
    let err = w
        .put_artifact(&aname("x.bin"), Failing(12 * 1024 * 1024))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("x.bin") && err.to_string().contains("disk on fire"),
        "{err}"
    );
    w.abort().await.unwrap();
    let paths = all_paths(f.store.as_ref()).await;
    assert!(!paths.iter().any(|p| p.contains("failing")), "{paths:?}");
}

async fn sweep_applies_retention(f: Fixture) {
    use backup_core::retention::{KeepCount, RetentionPolicy};
    let repo = f.repo();
    let kind = BackupKind::EtcdSnapshot;
    let now = jiff::Timestamp::now();
    let past = now - jiff::SignedDuration::from_secs(60);
    // The oldest has expired (backup-core never deletes the newest successful one).
    let mut w = repo.begin_backup(kind, &bname("s4-expired")).await.unwrap();
    w.put_artifact_bytes(&aname("a"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    w.commit(BTreeMap::new(), Some(past)).await.unwrap();
    for name in ["s1", "s2", "s3"] {
        write_backup(&repo, kind, name).await;
    }
    // An uncommitted leftover is not a candidate and is left alone.
    let mut pending = repo.begin_backup(kind, &bname("s5-pending")).await.unwrap();
    pending
        .put_artifact_bytes(&aname("a"), Bytes::from_static(b"x"))
        .await
        .unwrap();

    let policy = RetentionPolicy {
        ttl_expiry: true,
        keep_last: Some(KeepCount::new(2).unwrap()),
        gfs: None,
    };
    let later = jiff::Timestamp::now();
    let sweep = repo.sweep(kind, &policy, later).await.unwrap();
    assert!(sweep.refused.is_empty());
    let deleted = sweep.deleted;
    let deleted: Vec<_> = deleted.iter().map(|n| n.to_string()).collect();
    assert_eq!(deleted, vec!["s4-expired", "s1"]);
    let left: Vec<_> = repo
        .list(kind)
        .await
        .unwrap()
        .manifests
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(left, vec!["s2", "s3"]);
    let paths = all_paths(f.store.as_ref()).await;
    assert!(
        paths.contains(&"etcd-snapshots/s5-pending/a".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("/s1/") || p.contains("s4-expired")),
        "{paths:?}"
    );
}

/// Encryption to one recipient (plus the identity that reads it).
fn keypair() -> (Encryption, Identities) {
    let identities = Identities::generate();
    (
        Encryption::new(identities.recipients()).unwrap(),
        identities,
    )
}

async fn encrypted_round_trip_and_verify_without_keys(f: Fixture) {
    let (encryption, identities) = keypair();
    let kind = BackupKind::Resources;
    let writer_repo = f
        .repo()
        .with_encryption(encryption.clone())
        .with_upload_options(UploadOptions {
            part_size: 5 * 1024 * 1024,
            max_parts_in_flight: 2,
        });
    // Spans several parts and many age chunks, and one tiny artifact (a single age chunk).
    let (small, big) = {
        let big = pseudo_random(12 * 1024 * 1024 + 4321, 3);
        let mut w = writer_repo.begin_backup(kind, &bname("enc")).await.unwrap();
        let rec = w
            .put_artifact(&aname("data.tar.gz"), &big[..])
            .await
            .unwrap();
        // Stored size and checksum are the ciphertext's: age adds a header and 16 bytes per
        // 64 KiB chunk.
        assert!(rec.size > big.len() as u64, "{rec:?}");
        assert_ne!(rec.sha256, sha_hex(&big));
        let enc = rec.encryption.clone().expect("recorded as encrypted");
        assert_eq!(enc.scheme, EncryptionScheme::Age);
        assert_eq!(enc.recipients, encryption.fingerprints());
        w.put_artifact_bytes(&aname("meta.json"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        w.put_artifact_stream(&aname("empty"), futures::stream::empty())
            .await
            .unwrap();
        let m = w.commit(BTreeMap::new(), None).await.unwrap();
        assert_eq!(m.format_version, ENCRYPTED_FORMAT_VERSION);
        assert!(m.artifacts.iter().all(|a| a.encryption.is_some()));
        (b"{}".to_vec(), big)
    };

    // Stored bytes are an age file, and the stored checksum verifies without any key.
    let stored = f
        .store
        .get(&Path::from("velero/backups/enc/data.tar.gz"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    let manifest = f.repo().verify(kind, &bname("enc")).await.unwrap();
    assert_eq!(manifest.recipients(), encryption.fingerprints());
    let raw = {
        let mut s = f
            .repo()
            .open_stored_artifact(kind, &bname("enc"), &aname("data.tar.gz"))
            .await
            .unwrap();
        assert!(!s.is_decrypted());
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    };
    assert!(raw == stored, "the raw stream is the stored bytes");

    // With the identity: the plaintext, in full.
    let reader = f.repo().with_identities(identities.clone());
    assert_eq!(
        collect(&reader, kind, "enc", "data.tar.gz")
            .await
            .unwrap()
            .len(),
        big.len()
    );
    assert!(collect(&reader, kind, "enc", "data.tar.gz").await.unwrap() == big);
    assert_eq!(
        collect(&reader, kind, "enc", "meta.json").await.unwrap(),
        small
    );
    assert!(
        collect(&reader, kind, "enc", "empty")
            .await
            .unwrap()
            .is_empty()
    );
    let mut out = Vec::new();
    reader
        .download_artifact_to(kind, &bname("enc"), &aname("meta.json"), &mut out)
        .await
        .unwrap();
    assert_eq!(out, small);
    reader.ensure_readable(&manifest).unwrap();

    // Without an identity, or with the wrong one: refused before anything is read, naming
    // the recipient's fingerprint.
    let fingerprint = encryption.fingerprints()[0].to_string();
    let err = collect(&f.repo(), kind, "enc", "data.tar.gz")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::IdentityRequired { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&fingerprint), "{err}");
    assert!(f.repo().ensure_readable(&manifest).is_err());
    let stranger = Identities::generate();
    let wrong = f.repo().with_identities(stranger.clone());
    let err = collect(&wrong, kind, "enc", "data.tar.gz")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::NoMatchingIdentity { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&fingerprint), "{text}");
    assert!(text.contains(stranger.fingerprints()[0].as_str()), "{text}");
    assert!(matches!(
        wrong.ensure_readable(&manifest),
        Err(StorageError::NoMatchingIdentity { .. })
    ));

    // Key rotation: new backups to a new recipient; an identity file with both keys reads
    // both, the old key alone still reads the old backup and not the new one.
    let (new_encryption, new_identities) = keypair();
    write_with(
        &f.repo().with_encryption(new_encryption),
        kind,
        "rotated",
        b"new",
    )
    .await;
    let both = Identities::parse(&format!(
        "{}{}",
        identities.to_identity_file(),
        new_identities.to_identity_file()
    ))
    .unwrap();
    let both = f.repo().with_identities(both);
    assert_eq!(collect(&both, kind, "rotated", "a").await.unwrap(), b"new");
    assert!(collect(&both, kind, "enc", "meta.json").await.is_ok());
    assert!(collect(&reader, kind, "enc", "meta.json").await.is_ok());
    assert!(matches!(
        collect(&reader, kind, "rotated", "a").await,
        Err(StorageError::NoMatchingIdentity { .. })
    ));

    // Unencrypted backups in the same repository read as before, with or without keys.
    write_with(&f.repo(), kind, "plain", b"plain").await;
    let plain = f.repo().get_manifest(kind, &bname("plain")).await.unwrap();
    assert_eq!(plain.format_version, FORMAT_VERSION);
    assert!(!plain.is_encrypted());
    assert_eq!(
        collect(&reader, kind, "plain", "a").await.unwrap(),
        b"plain"
    );
    assert_eq!(
        collect(&f.repo(), kind, "plain", "a").await.unwrap(),
        b"plain"
    );
}

/// Writes and commits one artifact `a`.
async fn write_with(repo: &Repository, kind: BackupKind, name: &str, data: &'static [u8]) {
    let mut w = repo.begin_backup(kind, &bname(name)).await.unwrap();
    w.put_artifact_bytes(&aname("a"), Bytes::from_static(data))
        .await
        .unwrap();
    w.commit(BTreeMap::new(), None).await.unwrap();
}

async fn encrypted_artifacts_refuse_tampering(f: Fixture) {
    let (encryption, identities) = keypair();
    let kind = BackupKind::EtcdSnapshot;
    let data = pseudo_random(300_000, 11);
    let mut w = f
        .repo()
        .with_encryption(encryption)
        .begin_backup(kind, &bname("t"))
        .await
        .unwrap();
    w.put_artifact(&aname("snap"), &data[..]).await.unwrap();
    w.commit(BTreeMap::new(), None).await.unwrap();
    let reader = f.repo().with_identities(identities);
    let path = Path::from("etcd-snapshots/t/snap");
    let manifest_path = Path::from(format!("etcd-snapshots/t/{MANIFEST_FILE}"));
    let stored = f
        .store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let original_manifest = f
        .store
        .get(&manifest_path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();

    // Writes `bytes` as the artifact; with `consistent`, also rewrites the manifest's size and
    // checksum to match, as an attacker with write access to the bucket could.
    let tamper = |bytes: Vec<u8>, consistent: bool| {
        let store = Arc::clone(&f.raw);
        let (path, manifest_path) = (path.clone(), manifest_path.clone());
        let original_manifest = original_manifest.clone();
        async move {
            let mut manifest: serde_json::Value =
                serde_json::from_slice(&original_manifest).unwrap();
            if consistent {
                manifest["artifacts"][0]["size"] = bytes.len().into();
                manifest["artifacts"][0]["sha256"] = sha_hex(&bytes).into();
            }
            store
                .put(
                    &manifest_path,
                    PutPayload::from(manifest.to_string().into_bytes()),
                )
                .await
                .unwrap();
            store.put(&path, PutPayload::from(bytes)).await.unwrap();
        }
    };
    let mut flipped = stored.clone();
    flipped[stored.len() / 2] ^= 0x01;

    // A flipped byte: the stored checksum says so first, or, with a forged manifest, age.
    tamper(flipped.clone(), false).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::ChecksumMismatch { .. } | StorageError::Decrypt { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("do not restore"), "{err}");
    tamper(flipped, true).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(matches!(err, StorageError::Decrypt { .. }), "{err}");
    assert!(err.to_string().contains("altered or truncated"), "{err}");
    // Truncated ciphertext: storage notices, and age notices behind a forged manifest too.
    tamper(stored[..stored.len() - 1000].to_vec(), false).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(matches!(err, StorageError::Truncated { .. }), "{err}");
    tamper(stored[..stored.len() - 1000].to_vec(), true).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(matches!(err, StorageError::Decrypt { .. }), "{err}");
    // Cut at a chunk boundary, so every chunk left authenticates: age knows the last is missing.
    let header_and_one_chunk = stored.len() - (300_000 - 65_536) - 16 * 4;
    tamper(stored[..header_and_one_chunk].to_vec(), true).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(matches!(err, StorageError::Decrypt { .. }), "{err}");
    // Not an age file at all (the plaintext put in its place).
    tamper(data.clone(), true).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(matches!(err, StorageError::Decrypt { .. }), "{err}");
    assert!(err.to_string().contains("not an age"), "{err}");
    // A header altered to another recipient: the key no longer unwraps.
    let mut header = stored.clone();
    let at = header.iter().position(|&b| b == b'X').unwrap() + 10;
    header[at] = if header[at] == b'A' { b'B' } else { b'A' };
    tamper(header, true).await;
    let err = collect(&reader, kind, "t", "snap").await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Decrypt { .. } | StorageError::NoMatchingIdentity { .. }
        ),
        "{err}"
    );
    // Intact again: reads.
    tamper(stored, true).await;
    assert!(collect(&reader, kind, "t", "snap").await.unwrap() == data);
}

async fn velero_backups_are_never_overwritten(f: Fixture) {
    let repo = f.repo();
    f.raw
        .put(
            &Path::from("velero/backups/velero-made/velero-backup.json"),
            PutPayload::from_static(b"{}"),
        )
        .await
        .unwrap();
    let err = repo
        .begin_backup(BackupKind::Resources, &bname("velero-made"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::VeleroBackupExists { ref name } if name == "velero-made"),
        "{err}"
    );
    assert!(err.to_string().contains("choose another name"), "{err}");
}

macro_rules! conformance {
    ($backend:ident) => {
        #[allow(non_snake_case)]
        mod $backend {
            use super::support::{Backend, fixture};
            conformance!(@tests $backend;
                round_trip,
                manifest_last_and_list_only_committed,
                corrupt_manifest_is_reported,
                delete_removes_everything_manifest_first,
                scoping_isolates_clusters,
                probe_available,
                checksums_are_verified,
                multipart_streams_large_artifacts,
                sweep_applies_retention,
                encrypted_round_trip_and_verify_without_keys,
                encrypted_artifacts_refuse_tampering,
                velero_backups_are_never_overwritten,
            );
        }
    };
    (@tests $backend:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(fixture(Backend::$backend)).await;
            }
        )*
    };
}

conformance!(Memory);
conformance!(File);
conformance!(S3);
conformance!(WriteOnce);
conformance!(Azure);
conformance!(AzureWriteOnce);
