//! The restore's disk spool, so a restore's memory does not grow with the backup.
//!
//! [`spool_tarball`] first copies the downloaded tarball into an anonymous temporary file (the
//! download is verified against the manifest's SHA-256 as it is read, and a mismatch fails the
//! copy), then reads that file once (gunzip + tar) and appends each item's raw JSON to a second
//! anonymous temporary file, the spool. The spool is a plain concatenation of item bodies with
//! no framing; each item is found by its [`Record`] (`offset`, `len`), which the caller keeps
//! with the item's other small metadata (on disk too, see [`plan`](super::plan)). Bodies are
//! read back with [`Spool::read`] just before their item is created.
//!
//! The tarball is read with [`for_each_entry`], which remembers only recent paths: an item's
//! copies that are far apart in the tarball are all spooled, and the caller keeps one by the
//! reader's rule; the others stay in the file unused. Both files come from
//! [`tempfile::tempfile`], so they have no name on disk (or are deleted at once) and their space
//! is freed when they are dropped, whether the restore ends well, fails or the process dies.
//! They live in the system temporary directory (`TMPDIR`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use crate::format::ItemPath;
use crate::format::tarball::{TarballError, for_each_entry};

/// Where one item's body is in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    offset: u64,
    len: u64,
}

impl Record {
    /// Rebuilds a record from [`Record::parts`].
    pub(super) fn from_parts(offset: u64, len: u64) -> Self {
        Record { offset, len }
    }

    /// Where the body starts and how long it is.
    pub(super) fn parts(self) -> (u64, u64) {
        (self.offset, self.len)
    }

    /// The body's length.
    pub(super) fn len(self) -> u64 {
        self.len
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
/// calling `item` with each one's position, path, whether it is the plain copy, JSON and record
/// (see [`for_each_entry`] for which copies of an item are passed). Blocking. An error from
/// `item` is a local one (it stops the read and is returned as [`SpoolError::Local`]).
///
/// Whatever `item` saw is valid only when this returns `Ok`: the download, the gzip stream and
/// the tar archive were then read completely and the format version was checked.
pub(super) fn spool_tarball<R: Read>(
    mut download: R,
    mut item: impl FnMut(u64, ItemPath, bool, &[u8], Record) -> io::Result<()>,
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
    let read = for_each_entry(
        BufReader::with_capacity(256 * 1024, tarball),
        |pos, path, plain, data| {
            let stored = spool
                .append(&data)
                .and_then(|record| item(pos, path, plain, &data, record));
            stored.map_err(|e| {
                let message = e.to_string();
                local = Some(e);
                io::Error::other(message).into()
            })
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

    #[test]
    fn many_records_read_back_in_any_order() {
        let body = |i: usize| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300));
        let mut w = SpoolWriter::new().unwrap();
        let records: Vec<Record> = (0..20_000)
            .map(|i| w.append(body(i).as_bytes()).unwrap())
            .collect();
        let spool = w.finish().unwrap();
        for i in (0..records.len()).rev().step_by(7) {
            assert_eq!(spool.read(records[i]).unwrap(), body(i).as_bytes());
        }
        let (offset, len) = records[5].parts();
        assert_eq!(Record::from_parts(offset, len), records[5]);
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
        let spool = spool_tarball(&gz[..], |_, path, plain, data, record| {
            assert!(plain);
            seen.push((path.name, data.to_vec(), record));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        for (name, data, record) in seen {
            assert_eq!(data, format!("{{\"n\":\"{name}\"}}").as_bytes());
            assert_eq!(spool.read(record).unwrap(), data);
        }
        let refused = |r: Result<Spool, SpoolError>| matches!(r, Err(SpoolError::Refused(_)));
        let nothing = |_, _, _, _: &[u8], _| Ok(());
        assert!(refused(spool_tarball(&gz[..gz.len() - 4], nothing)));
        let failing = io::Read::chain(&gz[..20], FailingReader);
        assert!(refused(spool_tarball(failing, nothing)));
        let local = spool_tarball(&gz[..], |_, _, _, _, _| Err(io::Error::other("disk full")));
        assert!(matches!(local, Err(SpoolError::Local(e)) if e.to_string() == "disk full"));
    }

    /// A download that fails (as a checksum mismatch does).
    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("sha-256 mismatch"))
        }
    }
}
