//! etcd v3 snapshots.
//!
//! etcd's maintenance `Snapshot` RPC streams the bolt database in chunks and ends with the
//! SHA-256 of everything sent before it. We must check that trailer while streaming — never
//! trusting a snapshot that was cut short — without holding the database in memory.
//!
//! - [`take_snapshot`]: one member's snapshot, verified, zstd-compressed and uploaded while it
//!   streams, as one backup of kind etcd-snapshot whose manifest is written last and records the
//!   revision, sizes, member and cluster ids ([`attributes`]); optional keep-N rotation.
//! - [`list_snapshots`], [`prune`]: what is stored, and KKP-style `keep` rotation.
//! - [`restore`]: download, verify twice (storage SHA-256 and etcd's trailer), and build a new
//!   member data directory with etcd's own tool.
//!
//! Encryption at rest is the repository's (`backup_storage::crypt`): with recipients set, the
//! compressed stream is encrypted with age before upload (`age -d` then `zstd -d` gives exactly
//! `etcdctl snapshot save`'s file); with identities set, restore decrypts, and refuses an
//! encrypted snapshot it cannot decrypt before touching the data directory's parent.

mod connect;
mod error;
mod listing;
mod prune;
mod restore;
pub mod rpc;
mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trailing_hash;

pub use connect::{EtcdConnection, MemberStatus, TlsFiles, TlsPem, member_status};
pub use error::{EtcdError, Result};
pub use listing::{ChecksumState, SnapshotInfo, list_snapshots};
pub use prune::prune;
pub use restore::{MemberOptions, RestoreOutcome, RestoreRequest, find_restore_tool, restore};
pub use snapshot::{
    DEFAULT_COMPRESSION_LEVEL, Naming, ProgressFn, SnapshotOutcome, SnapshotProgress,
    SnapshotRequest, take_snapshot,
};
pub use trailing_hash::{SnapshotIntegrityError, TrailingHashVerifier, VerifiedSnapshot};

/// The one artifact of an etcd snapshot backup: etcd's stream (database + SHA-256 trailer),
/// zstd-compressed. Decompressed, it is exactly what `etcdctl snapshot save` writes.
pub const SNAPSHOT_ARTIFACT: &str = "snapshot.db.zst";

/// Keys of the manifest attributes a snapshot records, so tools can show them without
/// downloading the snapshot.
pub mod attributes {
    /// The configuration (rotation group) the snapshot belongs to.
    pub const CONFIG: &str = "etcd.config";
    /// etcd's revision when the snapshot was requested.
    pub const REVISION: &str = "etcd.revision";
    /// Backend database size etcd reported (bytes, may include free pages).
    pub const DB_SIZE: &str = "etcd.db-size";
    /// Bytes of database in the snapshot (without the trailer).
    pub const SNAPSHOT_SIZE: &str = "etcd.snapshot-size";
    /// etcd's SHA-256 of the database (its trailer), lower-case hex.
    pub const SNAPSHOT_SHA256: &str = "etcd.snapshot-sha256";
    /// Member id, hex as etcdctl prints it.
    pub const MEMBER_ID: &str = "etcd.member-id";
    /// Cluster id, hex.
    pub const CLUSTER_ID: &str = "etcd.cluster-id";
    /// etcd server version.
    pub const ETCD_VERSION: &str = "etcd.version";
    /// The endpoint the snapshot was streamed from.
    pub const ENDPOINT: &str = "etcd.endpoint";
    /// Compression of the artifact (`zstd`).
    pub const COMPRESSION: &str = "etcd.compression";

    /// The number recorded under `key`: `None` when the manifest records none, an error that
    /// names the attribute and its value when it is not a number (a damaged manifest is said so,
    /// never shown as "unknown").
    pub fn number<T: std::str::FromStr>(
        manifest: &backup_storage::Manifest,
        key: &str,
    ) -> Result<Option<T>, String> {
        match manifest.attributes.get(key) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| {
                format!("its manifest's attribute {key} is {value:?}, which is not a number")
            }),
        }
    }
}
