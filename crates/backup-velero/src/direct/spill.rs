//! Records on disk instead of in memory, so a restore's memory does not grow with its items.
//!
//! - [`RecordWriter`] / [`RecordFile`]: an append-only file of records (byte strings), read back
//!   in order as often as needed.
//! - [`Sorter`]: an external sort. Records are buffered up to [`SORT_BUDGET`] bytes, then sorted
//!   and written out as a run; [`Sorter::finish`] merges the runs (at most [`FAN_IN`] at a time,
//!   in several passes when there are more) into one [`Sorted`] stream. Records compare as
//!   bytes, so callers build keys that sort as they need: big-endian integers, and strings
//!   through [`put_key_str`].
//! - [`put_str`] and friends / [`Fields`]: a small binary encoding of the fields of a record.
//!
//! Every file is a [`tempfile::tempfile`]: it has no name, and its space is freed when it is
//! dropped, however the run ends. Memory: one sort buffer, or one read buffer per merged run
//! ([`READ_BUFFER`] each), never a record per item.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes of records (plus their index) a [`Sorter`] holds before it writes a sorted run.
pub(super) const SORT_BUDGET: usize = 4 * 1024 * 1024;
/// Most runs merged at once.
const FAN_IN: usize = 16;
/// Read buffer per run being merged, and per [`RecordFile`] reader.
const READ_BUFFER: usize = 64 * 1024;
/// Write buffer of a temporary file.
const WRITE_BUFFER: usize = 256 * 1024;
/// Largest record accepted (a record holds at most one object's name and path, or a message).
const MAX_RECORD: usize = 64 * 1024 * 1024;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads `[pos, end)` of a shared file with positioned reads (no shared cursor).
struct FileRange {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for FileRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a temporary file is shorter than what was written to it",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Length-prefixed records from a reader.
struct Records<R> {
    input: R,
}

impl<R: Read> Records<R> {
    /// The next record, `None` at a clean end.
    fn next_record(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < len.len() {
            match self.input.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(invalid("a temporary file ends inside a record")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        let mut record = vec![0; len];
        self.input.read_exact(&mut record)?;
        Ok(Some(record))
    }
}

fn write_record(out: &mut impl Write, record: &[u8]) -> io::Result<u64> {
    if record.len() > MAX_RECORD {
        return Err(invalid(format!(
            "a record of {} bytes is larger than the {MAX_RECORD} accepted",
            record.len()
        )));
    }
    out.write_all(&(record.len() as u32).to_le_bytes())?;
    out.write_all(record)?;
    Ok(4 + record.len() as u64)
}

/// Appends records to a new temporary file.
pub(super) struct RecordWriter {
    out: BufWriter<File>,
    len: u64,
}

impl RecordWriter {
    /// An empty file.
    pub(super) fn new() -> io::Result<Self> {
        Ok(RecordWriter {
            out: BufWriter::with_capacity(WRITE_BUFFER, tempfile::tempfile()?),
            len: 0,
        })
    }

    /// Appends one record.
    pub(super) fn push(&mut self, record: &[u8]) -> io::Result<()> {
        self.len += write_record(&mut self.out, record)?;
        Ok(())
    }

    /// Flushes the file for reading.
    pub(super) fn finish(self) -> io::Result<RecordFile> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(RecordFile {
            file: Arc::new(file),
            len: self.len,
        })
    }
}

/// A finished file of records.
pub(super) struct RecordFile {
    file: Arc<File>,
    len: u64,
}

impl RecordFile {
    /// Its records, in the order they were written (each call reads the file again).
    pub(super) fn iter(&self) -> impl Iterator<Item = io::Result<Vec<u8>>> + use<> {
        let mut records = Records {
            input: BufReader::with_capacity(
                READ_BUFFER,
                FileRange {
                    file: Arc::clone(&self.file),
                    pos: 0,
                    end: self.len,
                },
            ),
        };
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let next = records.next_record().transpose();
            failed = matches!(next, Some(Err(_)));
            next
        })
    }
}

/// An external sort of byte strings (see the module documentation).
pub(super) struct Sorter {
    arena: Vec<u8>,
    index: Vec<(usize, usize)>,
    budget: usize,
    runs: Vec<(u64, u64)>,
    file: Option<BufWriter<File>>,
    end: u64,
}

impl Default for Sorter {
    fn default() -> Self {
        Sorter::with_budget(SORT_BUDGET)
    }
}

impl Sorter {
    /// A sorter that holds up to `budget` bytes before writing a run (tests use small ones).
    pub(super) fn with_budget(budget: usize) -> Self {
        Sorter {
            arena: Vec::new(),
            index: Vec::new(),
            budget,
            runs: Vec::new(),
            file: None,
            end: 0,
        }
    }

    /// Adds one record.
    pub(super) fn push(&mut self, record: &[u8]) -> io::Result<()> {
        self.index.push((self.arena.len(), record.len()));
        self.arena.extend_from_slice(record);
        if self.arena.len() + self.index.len() * size_of::<(usize, usize)>() >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn sort_buffer(&mut self) {
        let arena = &self.arena;
        self.index
            .sort_unstable_by(|&(a, al), &(b, bl)| arena[a..a + al].cmp(&arena[b..b + bl]));
    }

    /// Writes the buffer as a sorted run.
    fn spill(&mut self) -> io::Result<()> {
        if self.index.is_empty() {
            return Ok(());
        }
        self.sort_buffer();
        let out = match &mut self.file {
            Some(out) => out,
            None => self.file.insert(BufWriter::with_capacity(
                WRITE_BUFFER,
                tempfile::tempfile()?,
            )),
        };
        let start = self.end;
        for &(at, len) in &self.index {
            self.end += write_record(out, &self.arena[at..at + len])?;
        }
        self.runs.push((start, self.end));
        self.arena.clear();
        self.index.clear();
        // Give the buffer back: between spills a sorter holds no more than it needs.
        self.arena.shrink_to(self.budget);
        Ok(())
    }

    /// Sorts everything pushed and returns it in order.
    pub(super) fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() {
            self.sort_buffer();
            return Ok(Sorted::Memory {
                arena: self.arena,
                index: self.index.into_iter(),
            });
        }
        self.spill()?;
        let file = self
            .file
            .take()
            .map(|out| out.into_inner().map_err(|e| e.into_error()))
            .transpose()?
            .ok_or_else(|| invalid("a sorter spilled runs without a file"))?;
        let file = Arc::new(file);
        let mut runs = std::mem::take(&mut self.runs);
        let mut end = self.end;
        // Merge passes until one merge can read every run.
        while runs.len() > FAN_IN {
            let mut merged = Vec::new();
            for group in runs.chunks(FAN_IN) {
                let start = end;
                let mut out = BufWriter::with_capacity(WRITE_BUFFER, &*file);
                let mut merge = Merge::new(&file, group)?;
                while let Some(record) = merge.next_record()? {
                    end += write_record(&mut out, &record)?;
                }
                out.flush()?;
                merged.push((start, end));
            }
            runs = merged;
        }
        Ok(Sorted::Merge(Merge::new(&file, &runs)?))
    }
}

/// A sorter's records, in byte order.
pub(super) enum Sorted {
    /// Everything fitted in the buffer.
    Memory {
        /// The records.
        arena: Vec<u8>,
        /// Where each is, in order.
        index: std::vec::IntoIter<(usize, usize)>,
    },
    /// Merging sorted runs from disk.
    Merge(Merge),
}

impl Iterator for Sorted {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::Memory { arena, index } => {
                let (at, len) = index.next()?;
                Some(Ok(arena[at..at + len].to_vec()))
            }
            Sorted::Merge(merge) => merge.next_record().transpose(),
        }
    }
}

/// The smallest current record of each run.
struct Head {
    record: Vec<u8>,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    /// Reversed: [`BinaryHeap`] pops its greatest element, the merge wants the smallest.
    fn cmp(&self, other: &Self) -> Ordering {
        (&other.record, other.run).cmp(&(&self.record, self.run))
    }
}

/// A k-way merge of sorted runs.
pub(super) struct Merge {
    readers: Vec<Records<BufReader<FileRange>>>,
    heap: BinaryHeap<Head>,
    failed: bool,
}

impl Merge {
    fn new(file: &Arc<File>, runs: &[(u64, u64)]) -> io::Result<Self> {
        let mut merge = Merge {
            readers: runs
                .iter()
                .map(|&(pos, end)| Records {
                    input: BufReader::with_capacity(
                        READ_BUFFER,
                        FileRange {
                            file: Arc::clone(file),
                            pos,
                            end,
                        },
                    ),
                })
                .collect(),
            heap: BinaryHeap::with_capacity(runs.len()),
            failed: false,
        };
        for run in 0..merge.readers.len() {
            merge.refill(run)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, run: usize) -> io::Result<()> {
        if let Some(record) = self.readers[run].next_record()? {
            self.heap.push(Head { record, run });
        }
        Ok(())
    }

    fn next_record(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.failed {
            return Ok(None);
        }
        let Some(Head { record, run }) = self.heap.pop() else {
            return Ok(None);
        };
        if let Err(e) = self.refill(run) {
            self.failed = true;
            return Err(e);
        }
        Ok(Some(record))
    }
}

/// Appends a `u8`.
pub(super) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

/// Appends a `u64`, big-endian: sorts as the number.
pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a `u32`, big-endian: sorts as the number.
pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a string, length first: equal strings encode equally and no encoding is a prefix of
/// another, but the order is not the strings' (see [`put_key_str`] for that).
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends an optional string.
pub(super) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_u8(out, 0),
        Some(s) => {
            put_u8(out, 1);
            put_str(out, s);
        }
    }
}

/// Appends a string so that records sort by it as [`str`]'s `Ord` does, whatever follows: NUL
/// bytes are escaped as `00 FF` and the string ends with `00 00`.
pub(super) fn put_key_str(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Reads back the fields of a record, in the order they were put.
pub(super) struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Reads `data` from its start.
    pub(super) fn new(data: &'a [u8]) -> Self {
        Fields { data }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.data.len() < n {
            return Err(invalid("a temporary record is shorter than its fields"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    /// A `u8`.
    pub(super) fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A `u32`.
    pub(super) fn u32(&mut self) -> io::Result<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes(
            bytes.try_into().map_err(|_| invalid("u32"))?,
        ))
    }

    /// A `u64`.
    pub(super) fn u64(&mut self) -> io::Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(
            bytes.try_into().map_err(|_| invalid("u64"))?,
        ))
    }

    /// A string.
    pub(super) fn str(&mut self) -> io::Result<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|e| invalid(e.to_string()))
    }

    /// An optional string.
    pub(super) fn opt_str(&mut self) -> io::Result<Option<&'a str>> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }

    /// A string put with [`put_key_str`].
    pub(super) fn key_str(&mut self) -> io::Result<String> {
        let mut out = Vec::new();
        loop {
            match self.take(1)?[0] {
                0 => match self.take(1)?[0] {
                    0 => break,
                    _ => out.push(0),
                },
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|e| invalid(e.to_string()))
    }

    /// What has not been read.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(sorter: Sorter) -> Vec<Vec<u8>> {
        sorter.finish().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn sorts_in_memory_and_through_many_runs_in_several_passes() {
        let records: Vec<Vec<u8>> = (0..20_000u64)
            .map(|i| {
                let mut r = Vec::new();
                put_u64(&mut r, i * 7919 % 20_011);
                put_str(&mut r, &"x".repeat((i % 13) as usize));
                r
            })
            .collect();
        let mut expected = records.clone();
        expected.sort();
        // All in memory; then runs of ~4 KiB: ~100 runs, more than FAN_IN, so two passes.
        for budget in [SORT_BUDGET, 4096] {
            let mut sorter = Sorter::with_budget(budget);
            for r in &records {
                sorter.push(r).unwrap();
            }
            if budget < SORT_BUDGET {
                assert!(sorter.runs.len() > FAN_IN, "{} runs", sorter.runs.len());
            }
            assert_eq!(sorted(sorter), expected);
        }
        assert!(sorted(Sorter::default()).is_empty());
    }

    #[test]
    fn duplicates_and_empty_records_are_kept() {
        let mut sorter = Sorter::with_budget(16);
        for r in [&b"b"[..], b"", b"a", b"b", b""] {
            sorter.push(r).unwrap();
        }
        assert_eq!(
            sorted(sorter),
            [&b""[..], b"", b"a", b"b", b"b"].map(<[u8]>::to_vec)
        );
    }

    #[test]
    fn key_strings_sort_as_strings_whatever_follows() {
        let words = ["", "a", "a\0", "a\0b", "ab", "a/b", "b", "\0", "é"];
        let mut sorter = Sorter::with_budget(8);
        for (i, w) in words.iter().enumerate() {
            let mut r = Vec::new();
            put_key_str(&mut r, w);
            put_key_str(&mut r, &format!("tail{}", words.len() - i));
            sorter.push(&r).unwrap();
        }
        let got: Vec<String> = sorted(sorter)
            .iter()
            .map(|r| Fields::new(r).key_str().unwrap())
            .collect();
        let mut expected: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        expected.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn fields_round_trip_and_refuse_short_records() {
        let mut r = Vec::new();
        put_u8(&mut r, 7);
        put_u32(&mut r, 70_000);
        put_u64(&mut r, u64::MAX - 1);
        put_str(&mut r, "ünï");
        put_opt_str(&mut r, None);
        put_opt_str(&mut r, Some(""));
        put_key_str(&mut r, "k\0y");
        r.extend_from_slice(b"rest");
        let mut f = Fields::new(&r);
        assert_eq!(f.u8().unwrap(), 7);
        assert_eq!(f.u32().unwrap(), 70_000);
        assert_eq!(f.u64().unwrap(), u64::MAX - 1);
        assert_eq!(f.str().unwrap(), "ünï");
        assert_eq!(f.opt_str().unwrap(), None);
        assert_eq!(f.opt_str().unwrap(), Some(""));
        assert_eq!(f.key_str().unwrap(), "k\0y");
        assert_eq!(f.rest(), b"rest");
        assert!(Fields::new(&r[..6]).str().is_err());
    }

    #[test]
    fn record_files_read_back_in_order_as_often_as_asked() {
        let mut w = RecordWriter::new().unwrap();
        for i in 0..10_000u32 {
            w.push(format!("record {i}").as_bytes()).unwrap();
        }
        w.push(b"").unwrap();
        let file = w.finish().unwrap();
        for _ in 0..2 {
            let all: Vec<Vec<u8>> = file.iter().map(Result::unwrap).collect();
            assert_eq!(all.len(), 10_001);
            assert_eq!(all[1234], b"record 1234");
            assert_eq!(all[10_000], b"");
        }
    }
}
