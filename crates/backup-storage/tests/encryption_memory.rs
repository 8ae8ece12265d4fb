//! Encryption keeps memory bounded: a 128 MiB artifact is encrypted while it streams to a
//! `file://` store and decrypted while it streams back, and the peak of live heap bytes (counted
//! by this test binary's own allocator) stays a small fraction of the artifact.
//!
//! One test in its own binary, so no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use backup_storage::{
    ArtifactName, BackupKind, BackupName, Encryption, Identities, Location, Repository,
    UploadOptions,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a new peak measurement from what is live now; returns that baseline.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

const SIZE: u64 = 128 * 1024 * 1024;
const MIB: usize = 1024 * 1024;

/// `len` pseudo-random bytes, generated as they are read and hashed on the way.
struct Generated {
    left: u64,
    state: u64,
    hasher: Sha256,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(64 * 1024) as usize / 8 * 8;
        let mut chunk = Vec::with_capacity(n.max(8));
        while chunk.len() < n {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.extend_from_slice(&self.state.to_le_bytes());
        }
        self.hasher.update(&chunk);
        self.left -= n as u64;
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

#[test]
fn a_large_artifact_is_encrypted_and_decrypted_in_bounded_memory() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = Location::parse(&url)
            .unwrap()
            .open(&BTreeMap::new())
            .unwrap();
        let identities = Identities::generate();
        let options = UploadOptions {
            part_size: 5 * MIB,
            max_parts_in_flight: 2,
        };
        let repo = Repository::new(store)
            .with_upload_options(options)
            .with_encryption(Encryption::new(identities.recipients()).unwrap())
            .with_identities(identities);
        let name = BackupName::new("big").unwrap();
        let artifact = ArtifactName::new("big.bin").unwrap();

        let mut source = Generated {
            left: SIZE,
            state: 0x9E37_79B9_7F4A_7C15,
            hasher: Sha256::new(),
        };
        let baseline = reset_peak();
        let mut w = repo
            .begin_backup(BackupKind::EtcdSnapshot, &name)
            .await
            .unwrap();
        let record = w.put_artifact(&artifact, &mut source).await.unwrap();
        w.commit(BTreeMap::new(), None).await.unwrap();
        let written_peak = PEAK.load(Ordering::Relaxed) - baseline;
        assert!(record.size > SIZE && record.encryption.is_some());

        let baseline = reset_peak();
        let mut stream = repo
            .open_artifact(BackupKind::EtcdSnapshot, &name, &artifact)
            .await
            .unwrap();
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            read += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let read_peak = PEAK.load(Ordering::Relaxed) - baseline;
        assert_eq!(read, SIZE);
        assert_eq!(hasher.finalize(), source.hasher.finalize(), "round trip");

        // Uploads hold (in flight + 1) parts; encryption adds a plaintext and a ciphertext slice.
        eprintln!(
            "128 MiB artifact: peak heap {:.1} MiB writing, {:.1} MiB reading",
            written_peak as f64 / MIB as f64,
            read_peak as f64 / MIB as f64
        );
        assert!(
            written_peak < 32 * MIB,
            "writing peaked at {written_peak} bytes"
        );
        assert!(read_peak < 16 * MIB, "reading peaked at {read_peak} bytes");
    });
}
