//! etcd v3 snapshots.
//!
//! etcd's maintenance `Snapshot` RPC streams the bolt database in chunks and ends with the
//! SHA-256 of everything sent before it. We must check that trailer while streaming — never
//! trusting a snapshot that was cut short — without holding the database in memory.

pub mod trailing_hash;

pub use trailing_hash::{SnapshotIntegrityError, TrailingHashVerifier};
