//! The crate's one error type. Every message names the endpoint, file or backup involved and
//! what to do about it, because these errors end up in front of an operator mid-incident.

use std::path::PathBuf;

use backup_storage::StorageError;

use crate::trailing_hash::SnapshotIntegrityError;

/// Everything that can go wrong while taking, listing, pruning or restoring etcd snapshots.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// No endpoint was given.
    #[error("no etcd endpoint given; pass at least one client URL such as https://127.0.0.1:2379")]
    NoEndpoints,

    /// An endpoint is not a usable URL.
    #[error(
        "invalid etcd endpoint `{endpoint}`: {reason}; use a client URL such as http://127.0.0.1:2379 or https://10.0.0.1:2379"
    )]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A TLS file (CA, client certificate or key) could not be read.
    #[error("cannot read TLS {what} `{path}`: {source}; check the path and its permissions")]
    TlsFile {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Client certificate and key must be given together.
    #[error(
        "a client certificate needs its key and vice versa (got only the {given}); pass both --cert and --key"
    )]
    IncompleteClientIdentity {
        /// Which of the two was given.
        given: &'static str,
    },

    /// Nothing accepts TCP connections at the endpoint.
    #[error(
        "etcd endpoint `{endpoint}` is unreachable: {reason}; check that etcd runs there and the host and port are its client URL"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why the connection failed.
        reason: String,
    },

    /// The endpoint (or an address its name resolves to) is one projects may not reach.
    #[error(
        "etcd endpoint `{endpoint}`: {denied}; name etcd by an address outside the link-local \
         and metadata ranges and the platform's own networks"
    )]
    AddressNotAllowed {
        /// The endpoint.
        endpoint: String,
        /// The refusal.
        denied: backup_net::AddressDenied,
    },

    /// Something accepts connections at the endpoint, but it did not answer as etcd v3.
    #[error(
        "endpoint `{endpoint}` accepts connections but did not answer as an etcd v3 server: {reason}; check that the port is etcd's client port (not the peer port or another service) and whether etcd requires TLS (--cacert/--cert/--key)"
    )]
    NotEtcd {
        /// The endpoint.
        endpoint: String,
        /// The gRPC/transport error.
        reason: String,
    },

    /// The TLS handshake or certificate check failed.
    #[error(
        "TLS with etcd endpoint `{endpoint}` failed: {reason}; check that the CA file signed etcd's server certificate, that etcd trusts the client certificate, and that the endpoint uses https://"
    )]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        reason: String,
    },

    /// None of several endpoints worked; each one's failure is listed.
    #[error("no etcd endpoint could be used:\n{}", .failures.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    AllEndpointsFailed {
        /// One error per endpoint, in the order tried.
        failures: Vec<EtcdError>,
    },

    /// The snapshot RPC failed after it started.
    #[error(
        "etcd snapshot from `{endpoint}` failed after {received} bytes: {reason}; nothing was stored, try again"
    )]
    SnapshotStream {
        /// The endpoint.
        endpoint: String,
        /// Bytes received before the failure.
        received: u64,
        /// The gRPC error.
        reason: String,
    },

    /// etcd's trailing SHA-256 is missing or does not match.
    #[error("etcd snapshot from {origin} failed its integrity check: {source}")]
    Integrity {
        /// Where the data came from (`` `endpoint` `` or `` backup `name` ``).
        origin: String,
        /// What was wrong.
        #[source]
        source: SnapshotIntegrityError,
    },

    /// Compression or decompression failed.
    #[error("zstd {operation} of snapshot `{backup}` failed: {source}")]
    Codec {
        /// `compression` or `decompression`.
        operation: &'static str,
        /// The backup.
        backup: String,
        /// The zstd error.
        #[source]
        source: std::io::Error,
    },

    /// A restored snapshot does not hash to what was recorded when it was taken.
    #[error(
        "etcd snapshot `{backup}` is corrupt: its database hashes to sha256 {actual} but sha256 {expected} was recorded when it was taken; do not restore from it"
    )]
    RestoredChecksumMismatch {
        /// The backup.
        backup: String,
        /// Recorded SHA-256.
        expected: String,
        /// SHA-256 of what was decompressed.
        actual: String,
    },

    /// The backup exists but is not one of our etcd snapshots (no snapshot artifact).
    #[error("backup `{backup}` is not an etcd snapshot written by this tool: {reason}")]
    NotASnapshot {
        /// The backup.
        backup: String,
        /// What is missing.
        reason: String,
    },

    /// The name is not usable for a snapshot configuration.
    #[error(
        "invalid snapshot name `{name}`: {reason}; use a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },

    /// zstd level out of range.
    #[error("zstd compression level {level} is out of range; use 1 (fastest) to 19 (smallest)")]
    InvalidCompressionLevel {
        /// The rejected level.
        level: i32,
    },

    /// Keep count out of range.
    #[error(transparent)]
    Retention(#[from] backup_core::retention::RetentionError),

    /// The restore target already holds data.
    #[error(
        "data directory `{}` is not empty; refusing to overwrite an existing etcd member — pass a new or empty directory", .path.display()
    )]
    DataDirNotEmpty {
        /// The directory.
        path: PathBuf,
    },

    /// Neither `etcdutl` nor `etcdctl` could be found.
    #[error(
        "neither etcdutl nor etcdctl found (looked at: {tried}); install etcd's client tools (Debian: etcd-client) or pass the tool's path"
    )]
    ToolNotFound {
        /// Where we looked.
        tried: String,
    },

    /// `etcdutl/etcdctl snapshot restore` failed.
    #[error("`{command}` failed ({status}): {output}")]
    RestoreTool {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr and stdout.
        output: String,
    },

    /// Local file system trouble during restore.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, naming the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The storage location failed or holds no such backup.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Result alias for this crate.
pub type Result<T, E = EtcdError> = std::result::Result<T, E>;
