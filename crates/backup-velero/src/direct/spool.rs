//! The restore's disk spool, so a restore's memory does not grow with the backup.
//!
//! [`spool_tarball`] first copies the downloaded tarball into an anonymous temporary file (the
//! download is verified against the manifest's SHA-256 as it is read, and a mismatch fails the
//! copy), then reads that file once (gunzip + tar) and appends each item's raw JSON to a second
//! anonymous temporary file, the spool. The spool is a plain concatenation of item bodies with
//! no framing; each item is found by its [`Record`] (`offset`, `len`), which the caller keeps
//! with the item's other small metadata. Bodies are read back one by one with [`Spool::read`]
//! just before their item is created.
//!
//! When a tarball holds an item's preferred-version copy before its plain copy, both are
//! appended and the plain copy's record replaces the other (see
//! [`for_each_item`](crate::format::tarball::for_each_item)); the first copy stays in the file
//! unused. Both files come from [`tempfile::tempfile`], so they have no name on disk (or are
//! deleted at once) and their space is freed when they are dropped, whether the restore ends
//! well, fails or the process dies. They live in the system temporary directory (`TMPDIR`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use futures::{Stream, StreamExt, stream};

use crate::format::ItemPath;
use crate::format::tarball::{TarballError, for_each_item};

/// Most items whose bodies are read in one blocking call.
const BATCH_ITEMS: usize = 256;
/// Most bytes of bodies read in one blocking call (a batch holds at least one item).
const BATCH_BYTES: u64 = 1024 * 1024;

/// Where one item's body is in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    offset: u64,
    len: u64,
}

#[cfg(test)]
impl Record {
    /// A record for tests of code that only carries records around.
    pub(super) fn for_test(offset: u64, len: u64) -> Self {
        Record { offset, len }
    }
}

/// Appends bodies to a new spool.
pub(super) struct SpoolWriter {
    out: BufWriter<File>,
    end: u64,
}

impl SpoolWriter {
    /// Starts an empty spool in a temporary file.
    pub(super) fn new() -> io::Result<Self> {
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(256 * 1024, tempfile::tempfile()?),
            end: 0,
        })
    }

    /// Appends one body and says where it is.
    pub(super) fn append(&mut self, data: &[u8]) -> io::Result<Record> {
        self.out.write_all(data)?;
        let record = Record {
            offset: self.end,
            len: data.len() as u64,
        };
        self.end += record.len;
        Ok(record)
    }

    /// Flushes the spool and opens it for reading.
    pub(super) fn finish(self) -> io::Result<Spool> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Spool {
            file,
            len: self.end,
        })
    }
}

/// A finished spool: bodies readable by their [`Record`], from any thread.
pub(super) struct Spool {
    file: File,
    len: u64,
}

impl Spool {
    /// Reads one body (blocking; see [`Spool::read_async`]).
    pub(super) fn read(&self, record: Record) -> io::Result<Vec<u8>> {
        if record.offset.saturating_add(record.len) > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "spool record {record:?} is past its end ({} bytes)",
                    self.len
                ),
            ));
        }
        let mut data = vec![0; record.len as usize];
        // Positioned reads share the file between concurrent creates without a lock.
        self.file.read_exact_at(&mut data, record.offset)?;
        Ok(data)
    }

    /// Reads the bodies of `items` in batches (up to [`BATCH_ITEMS`] items or [`BATCH_BYTES`]
    /// bytes), each batch on a blocking thread, and yields every item with its body in order.
    /// One thread round trip per batch instead of per item: for many small objects the round
    /// trips, not the reads, were the cost.
    pub(super) fn read_batched<T: Send + 'static>(
        self: &Arc<Self>,
        items: Vec<T>,
        record: fn(&T) -> Record,
    ) -> impl Stream<Item = (T, io::Result<Vec<u8>>)> + use<T> {
        let mut batches: Vec<Vec<T>> = Vec::new();
        let mut bytes = 0;
        for item in items {
            let len = record(&item).len;
            match batches.last_mut() {
                Some(batch) if batch.len() < BATCH_ITEMS && bytes + len <= BATCH_BYTES => {
                    bytes += len;
                    batch.push(item);
                }
                _ => {
                    bytes = len;
                    batches.push(vec![item]);
                }
            }
        }
        let spool = Arc::clone(self);
        stream::iter(batches)
            .then(move |batch| {
                let spool = Arc::clone(&spool);
                async move {
                    let records: Vec<Record> = batch.iter().map(record).collect();
                    let bodies = tokio::task::spawn_blocking(move || {
                        records.into_iter().map(|r| spool.read(r)).collect()
                    })
                    .await
                    .unwrap_or_else(|e| {
                        let message = format!("reading the spool crashed: {e}");
                        (0..batch.len())
                            .map(|_| Err(io::Error::other(message.clone())))
                            .collect::<Vec<_>>()
                    });
                    stream::iter(batch.into_iter().zip(bodies))
                }
            })
            .flatten()
    }
}

/// Why [`spool_tarball`] failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum SpoolError {
    /// The download or the tarball is bad (checksum mismatch, truncated, not a Velero tarball).
    #[error(transparent)]
    Refused(#[from] TarballError),
    /// Writing a temporary file failed (e.g. the temporary directory is full).
    #[error("writing a temporary file failed: {0}")]
    Local(io::Error),
}

/// Copies `download` (a tarball) into a temporary file, then reads it and spools its items,
/// calling `item` with each item's sequence number, path, JSON and record (the same sequence
/// number again when a plain copy replaces a preferred-version one: keep the last). Blocking.
///
/// Whatever `item` saw is valid only when this returns `Ok`: the download, the gzip stream and
/// the tar archive were then read completely and the format version was checked.
pub(super) fn spool_tarball<R: Read>(
    mut download: R,
    mut item: impl FnMut(usize, ItemPath, &[u8], Record),
) -> Result<Spool, SpoolError> {
    let mut tarball =
        BufWriter::with_capacity(256 * 1024, tempfile::tempfile().map_err(SpoolError::Local)?);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match download.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TarballError::Io(e).into()),
        };
        tarball.write_all(&buf[..n]).map_err(SpoolError::Local)?;
    }
    let mut tarball = tarball
        .into_inner()
        .map_err(|e| SpoolError::Local(e.into_error()))?;
    tarball
        .seek(SeekFrom::Start(0))
        .map_err(SpoolError::Local)?;
    let mut spool = SpoolWriter::new().map_err(SpoolError::Local)?;
    let mut local = None;
    let read = for_each_item(
        BufReader::with_capacity(256 * 1024, tarball),
        |seq, path, data| {
            let record = spool.append(&data).map_err(|e| {
                let message = e.to_string();
                local = Some(e);
                io::Error::other(message)
            })?;
            item(seq, path, &data, record);
            Ok(())
        },
    );
    match (read, local) {
        (_, Some(e)) => Err(SpoolError::Local(e)),
        (Err(e), None) => Err(e.into()),
        (Ok(()), None) => spool.finish().map_err(SpoolError::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::TarballWriter;

    #[test]
    fn records_round_trip() {
        let mut w = SpoolWriter::new().unwrap();
        let a = w.append(br#"{"a":1}"#).unwrap();
        let empty = w.append(b"").unwrap();
        let b = w.append(b"second").unwrap();
        let spool = w.finish().unwrap();
        assert_eq!(spool.read(b).unwrap(), b"second");
        assert_eq!(spool.read(a).unwrap(), br#"{"a":1}"#);
        assert_eq!(spool.read(empty).unwrap(), b"");
        let past = Record {
            offset: b.offset,
            len: b.len + 1,
        };
        assert!(spool.read(past).is_err());
    }

    #[test]
    fn an_empty_spool_reads_nothing() {
        let spool = SpoolWriter::new().unwrap().finish().unwrap();
        assert_eq!(spool.read(Record { offset: 0, len: 0 }).unwrap(), b"");
        assert!(spool.read(Record { offset: 0, len: 1 }).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_records_read_back_in_any_order_and_concurrently() {
        let body = |i: usize| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300));
        let mut w = SpoolWriter::new().unwrap();
        let records: Vec<Record> = (0..20_000)
            .map(|i| w.append(body(i).as_bytes()).unwrap())
            .collect();
        let spool = Arc::new(w.finish().unwrap());
        for i in (0..records.len()).rev().step_by(7) {
            assert_eq!(spool.read(records[i]).unwrap(), body(i).as_bytes());
        }
        // In batches, in the order asked for, whatever the order in the file; batches split by
        // count (256) and by bytes (1 MiB), and every item comes back exactly once.
        let wanted: Vec<(usize, Record)> = (0..records.len())
            .map(|k| k * 37 % records.len())
            .map(|i| (i, records[i]))
            .collect();
        let got: Vec<_> = spool
            .read_batched(wanted.clone(), |&(_, record)| record)
            .collect()
            .await;
        assert_eq!(got.iter().map(|(w, _)| *w).collect::<Vec<_>>(), wanted);
        for ((i, _), data) in got {
            assert_eq!(data.unwrap(), body(i).as_bytes());
        }
    }

    #[test]
    fn spools_a_tarball_and_refuses_a_damaged_one() {
        let mut w = TarballWriter::new(Vec::new()).unwrap();
        for name in ["a", "b", "c"] {
            let path = ItemPath {
                resource: "configmaps".into(),
                group: String::new(),
                namespace: Some("ns".into()),
                name: name.into(),
                version_dir: None,
            };
            w.add_item(&path, "v1", format!("{{\"n\":\"{name}\"}}").as_bytes())
                .unwrap();
        }
        let gz = w.finish().unwrap();
        let mut seen = Vec::new();
        let spool = spool_tarball(&gz[..], |_, path, data, record| {
            seen.push((path.name, data.to_vec(), record));
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        for (name, data, record) in seen {
            assert_eq!(data, format!("{{\"n\":\"{name}\"}}").as_bytes());
            assert_eq!(spool.read(record).unwrap(), data);
        }
        let refused = |r: Result<Spool, SpoolError>| matches!(r, Err(SpoolError::Refused(_)));
        assert!(refused(spool_tarball(&gz[..gz.len() - 4], |_, _, _, _| {})));
        let failing = io::Read::chain(&gz[..20], FailingReader);
        assert!(refused(spool_tarball(failing, |_, _, _, _| {})));
    }

    /// A download that fails (as a checksum mismatch does).
    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("sha-256 mismatch"))
        }
    }
}
