//! Streaming check of the SHA-256 trailer that ends every etcd v3 snapshot stream.
//!
//! The payload and the trailer arrive in arbitrary chunk boundaries, so the verifier keeps the
//! last 32 bytes seen back from the hash and releases everything older as verified-so-far data.
//! Memory stays at 32 bytes plus the chunk being handled, whatever the database size.

use sha2::{Digest, Sha256};

/// Length of the SHA-256 trailer etcd appends to a snapshot stream.
pub const TRAILER_LEN: usize = 32;

/// Why a snapshot stream failed its integrity check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotIntegrityError {
    #[error(
        "etcd snapshot stream ended after {received} bytes, too short to hold etcd's \
         {TRAILER_LEN}-byte SHA-256 trailer: the snapshot was cut short, do not use it"
    )]
    MissingTrailer { received: u64 },
    #[error(
        "etcd snapshot checksum mismatch after {payload_bytes} bytes: etcd sent sha256 {expected}, \
         the received data hashes to {actual}; the snapshot is corrupt, take a new one"
    )]
    Mismatch {
        payload_bytes: u64,
        expected: String,
        actual: String,
    },
}

/// Splits an etcd snapshot stream into payload and trailer and checks the trailer.
#[derive(Default)]
pub struct TrailingHashVerifier {
    hasher: Sha256,
    held_back: Vec<u8>,
    payload_bytes: u64,
}

impl TrailingHashVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk from the stream and returns the bytes that are now known to be payload
    /// (everything except the last [`TRAILER_LEN`] bytes seen so far). Hand them on to
    /// compression or storage; the returned bytes are owned so the caller can send them on.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held_back.extend_from_slice(chunk);
        let release = self.held_back.len().saturating_sub(TRAILER_LEN);
        let payload: Vec<u8> = self.held_back.drain(..release).collect();
        self.hasher.update(&payload);
        self.payload_bytes += payload.len() as u64;
        payload
    }

    /// Ends the stream: checks that a full trailer arrived and that it matches the payload.
    /// Returns the payload length and its SHA-256 (hex) on success.
    pub fn finish(self) -> Result<(u64, String), SnapshotIntegrityError> {
        if self.held_back.len() < TRAILER_LEN {
            return Err(SnapshotIntegrityError::MissingTrailer {
                received: self.payload_bytes + self.held_back.len() as u64,
            });
        }
        let actual = hex::encode(self.hasher.finalize());
        let expected = hex::encode(&self.held_back);
        if actual != expected {
            return Err(SnapshotIntegrityError::Mismatch {
                payload_bytes: self.payload_bytes,
                expected,
                actual,
            });
        }
        Ok((self.payload_bytes, actual))
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
    ) -> (Vec<u8>, Result<(u64, String), SnapshotIntegrityError>) {
        let mut verifier = TrailingHashVerifier::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            out.extend(verifier.push(piece));
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
            let (len, sha) = result.unwrap();
            assert_eq!(len, payload.len() as u64);
            assert_eq!(sha, hex::encode(Sha256::digest(&payload)));
        }
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
