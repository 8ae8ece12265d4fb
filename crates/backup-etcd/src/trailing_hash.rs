//! Streaming check of the SHA-256 trailer that ends every etcd v3 snapshot stream.
//!
//! The payload and the trailer arrive in arbitrary chunk boundaries, so the verifier keeps the
//! last 32 bytes seen back from the hash and releases everything older as verified-so-far data.
//! Memory stays at 32 bytes, whatever the database size; nothing is allocated per chunk.

use sha2::{Digest, Sha256};

/// Length of the SHA-256 trailer etcd appends to a snapshot stream.
pub const TRAILER_LEN: usize = 32;

/// Why a snapshot stream failed its integrity check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotIntegrityError {
    /// The stream ended before etcd's trailer could have been sent in full.
    #[error(
        "etcd snapshot stream ended after {received} bytes, too short to hold etcd's \
         {TRAILER_LEN}-byte SHA-256 trailer: the snapshot was cut short, do not use it"
    )]
    MissingTrailer {
        /// Bytes received before the stream ended.
        received: u64,
    },
    /// The trailer etcd sent does not match the hash of the data received before it.
    #[error(
        "etcd snapshot checksum mismatch after {payload_bytes} bytes: etcd sent sha256 {expected}, \
         the received data hashes to {actual}; the snapshot is corrupt, take a new one"
    )]
    Mismatch {
        /// Length of the database part of the stream (everything before the trailer).
        payload_bytes: u64,
        /// The SHA-256 etcd sent in its trailer, as lower-case hex.
        expected: String,
        /// The SHA-256 of the bytes actually received, as lower-case hex.
        actual: String,
    },
}

/// What a verified stream contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedSnapshot {
    /// Length of the database (the stream without its trailer).
    pub payload_bytes: u64,
    /// SHA-256 of the database, which equals etcd's trailer.
    pub sha256: [u8; TRAILER_LEN],
}

impl VerifiedSnapshot {
    /// The SHA-256 as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Splits an etcd snapshot stream into payload and trailer and checks the trailer.
///
/// Allocation-free: the last [`TRAILER_LEN`] bytes live in a fixed array, and released payload
/// is handed to a sink as borrowed slices (at most two per chunk), so the caller decides
/// whether and where to copy.
#[derive(Default)]
pub struct TrailingHashVerifier {
    hasher: Sha256,
    held_back: [u8; TRAILER_LEN],
    held_len: usize,
    payload_bytes: u64,
}

impl TrailingHashVerifier {
    /// A verifier at the start of a stream: nothing received, nothing hashed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total bytes fed so far (payload released plus bytes held back).
    pub fn received(&self) -> u64 {
        self.payload_bytes + self.held_len as u64
    }

    /// Feeds one chunk from the stream and passes the bytes that are now known to be payload
    /// (everything except the last [`TRAILER_LEN`] bytes seen so far) to `sink`, in order.
    pub fn push(&mut self, chunk: &[u8], mut sink: impl FnMut(&[u8])) {
        let total = self.held_len + chunk.len();
        if total <= TRAILER_LEN {
            self.held_back[self.held_len..total].copy_from_slice(chunk);
            self.held_len = total;
            return;
        }
        let release = total - TRAILER_LEN;
        // Part of what was held back becomes payload; the rest stays held, followed by the
        // chunk's own tail.
        let from_held = release.min(self.held_len);
        if from_held > 0 {
            let old = self.held_back;
            let released = &old[..from_held];
            self.hasher.update(released);
            sink(released);
            self.held_back.copy_within(from_held..self.held_len, 0);
            self.held_len -= from_held;
        }
        let from_chunk = release - from_held;
        let (payload, tail) = chunk.split_at(from_chunk);
        if !payload.is_empty() {
            self.hasher.update(payload);
            sink(payload);
        }
        self.held_back[self.held_len..self.held_len + tail.len()].copy_from_slice(tail);
        self.held_len += tail.len();
        self.payload_bytes += release as u64;
    }

    /// Ends the stream: checks that a full trailer arrived and that it matches the payload.
    pub fn finish(self) -> Result<VerifiedSnapshot, SnapshotIntegrityError> {
        if self.held_len < TRAILER_LEN {
            return Err(SnapshotIntegrityError::MissingTrailer {
                received: self.received(),
            });
        }
        let actual: [u8; TRAILER_LEN] = self.hasher.finalize().into();
        if actual != self.held_back {
            return Err(SnapshotIntegrityError::Mismatch {
                payload_bytes: self.payload_bytes,
                expected: hex::encode(self.held_back),
                actual: hex::encode(actual),
            });
        }
        Ok(VerifiedSnapshot {
            payload_bytes: self.payload_bytes,
            sha256: actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(payload: &[u8]) -> Vec<u8> {
        let mut stream = payload.to_vec();
        stream.extend_from_slice(&Sha256::digest(payload));
        stream
    }

    fn run(
        stream: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, Result<VerifiedSnapshot, SnapshotIntegrityError>) {
        let mut verifier = TrailingHashVerifier::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            verifier.push(piece, |p| out.extend_from_slice(p));
        }
        (out, verifier.finish())
    }

    #[test]
    fn releases_exactly_the_payload_whatever_the_chunking() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let stream = stream_of(&payload);
        for chunk in [1, 7, 31, 32, 33, 4096, stream.len()] {
            let (out, result) = run(&stream, chunk);
            assert_eq!(out, payload, "chunk size {chunk}");
            let verified = result.unwrap();
            assert_eq!(verified.payload_bytes, payload.len() as u64);
            assert_eq!(verified.sha256_hex(), hex::encode(Sha256::digest(&payload)));
        }
    }

    #[test]
    fn uneven_chunks_release_held_bytes_in_order() {
        let payload: Vec<u8> = (0..5_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let stream = stream_of(&payload);
        let sizes = [1usize, 40, 3, 31, 0, 64, 2, 33, 500];
        let mut verifier = TrailingHashVerifier::new();
        let mut out = Vec::new();
        let mut rest = &stream[..];
        let mut i = 0;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(sizes[i % sizes.len()].min(rest.len()));
            verifier.push(piece, |p| out.extend_from_slice(p));
            assert!(verifier.received() as usize == stream.len() - tail.len());
            rest = tail;
            i += 1;
        }
        assert_eq!(out, payload);
        assert_eq!(verifier.finish().unwrap().payload_bytes, 5_000);
    }

    #[test]
    fn a_flipped_byte_is_a_mismatch_naming_both_hashes() {
        let payload = vec![7u8; 1000];
        let mut stream = stream_of(&payload);
        stream[500] ^= 1;
        let (_, result) = run(&stream, 64);
        let err = result.unwrap_err();
        assert!(matches!(
            err,
            SnapshotIntegrityError::Mismatch {
                payload_bytes: 1000,
                ..
            }
        ));
        let message = err.to_string();
        assert!(
            message.contains(&hex::encode(Sha256::digest(&payload))),
            "{message}"
        );
    }

    #[test]
    fn a_stream_cut_before_the_trailer_is_refused() {
        let (_, result) = run(&[1, 2, 3], 2);
        assert_eq!(
            result.unwrap_err(),
            SnapshotIntegrityError::MissingTrailer { received: 3 }
        );
        let payload = vec![9u8; 100];
        let stream = stream_of(&payload);
        let (_, result) = run(&stream[..stream.len() - 10], 16);
        assert!(matches!(
            result.unwrap_err(),
            SnapshotIntegrityError::Mismatch { .. }
        ));
    }
}
