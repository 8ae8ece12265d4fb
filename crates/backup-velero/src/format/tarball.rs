//! The backup tarball: `metadata/version` plus one JSON file per item, in Velero's layout.
//!
//! Each item is written twice, as Velero's format 1.1.0 does: at
//! `resources/<resource.group>/namespaces/<ns>/<name>.json` and under
//! `resources/<resource.group>/<version>-preferredversion/...`. The reader accepts tarballs with
//! either copy or both and yields each item once.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::tarball_layout::{FORMAT_VERSION, ItemPath, LayoutError, VERSION_FILE};

/// Largest single entry accepted when reading (a Kubernetes object is at most ~1.5 MiB in etcd).
const MAX_ENTRY: u64 = 64 * 1024 * 1024;

/// Why a tarball could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    /// Reading or writing failed (also: not gzip, truncated, or the source stream failed,
    /// e.g. a checksum mismatch).
    #[error("backup tarball I/O failed: {0}")]
    Io(#[from] io::Error),
    /// An item path cannot be represented.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// `metadata/version` is missing or names a format we do not read.
    #[error(
        "backup tarball has format version {found:?}; this version reads Velero format 1.x ({FORMAT_VERSION})"
    )]
    Version {
        /// What the tarball says (`None` when the file is absent).
        found: Option<String>,
    },
    /// An entry is larger than any Kubernetes object can be.
    #[error("tarball entry {path:?} is {size} bytes, more than the {MAX_ENTRY} accepted")]
    TooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: u64,
    },
}

/// Writes a Velero tarball (tar + gzip) into any `Write`, item by item.
pub struct TarballWriter<W: Write> {
    builder: tar::Builder<GzEncoder<W>>,
    mtime: u64,
    items: u64,
}

impl<W: Write> TarballWriter<W> {
    /// Starts a tarball and writes `metadata/version`.
    pub fn new(out: W) -> Result<Self, TarballError> {
        let mtime = jiff::Timestamp::now().as_second().max(0) as u64;
        let mut w = TarballWriter {
            builder: tar::Builder::new(GzEncoder::new(out, Compression::fast())),
            mtime,
            items: 0,
        };
        // Velero writes the version followed by a newline.
        w.append(VERSION_FILE, format!("{FORMAT_VERSION}\n").as_bytes())?;
        Ok(w)
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), TarballError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder.append_data(&mut header, path, data)?;
        Ok(())
    }

    /// Adds one item (its JSON) at its plain path and its `<version>-preferredversion` copy.
    pub fn add_item(
        &mut self,
        item: &ItemPath,
        preferred_version: &str,
        json: &[u8],
    ) -> Result<(), TarballError> {
        let mut plain = item.clone();
        plain.version_dir = None;
        self.append(&plain.to_path()?, json)?;
        plain.version_dir = Some(format!("{preferred_version}-preferredversion"));
        self.append(&plain.to_path()?, json)?;
        self.items += 1;
        Ok(())
    }

    /// Items added so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Finishes tar and gzip and returns the output.
    pub fn finish(self) -> Result<W, TarballError> {
        let gz = self.builder.into_inner()?;
        Ok(gz.finish()?)
    }
}

/// One item read from a tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballItem {
    /// Where it was (normalised: `version_dir` is `None`).
    pub path: ItemPath,
    /// Its JSON.
    pub data: Vec<u8>,
}

/// Reads every item of a Velero tarball into memory. Accepts the plain layout, the
/// preferred-version layout or both (each item is returned once, the plain copy winning); other
/// entries are ignored. Fails on a missing or foreign `metadata/version` and on any I/O error, so
/// a truncated or corrupted source never yields a partial list. Built on [`for_each_item`]; use
/// that directly to avoid holding every item.
pub fn read_tarball<R: Read>(input: R) -> Result<Vec<TarballItem>, TarballError> {
    let mut items: Vec<TarballItem> = Vec::new();
    for_each_item(input, |seq, path, data| {
        let item = TarballItem { path, data };
        match items.get_mut(seq) {
            // The plain copy replacing a preferred-version one.
            Some(slot) => *slot = item,
            None => items.push(item),
        }
        Ok(())
    })?;
    Ok(items)
}

/// Reads a Velero tarball as a stream, one entry at a time, and calls `item` with each item's
/// sequence number (its position among the distinct items, in tarball order), normalised path
/// (`version_dir` is `None`) and JSON; at most one item is in memory.
///
/// Dedup rule (the same as [`read_tarball`]'s): the plain copy of an item wins over its
/// `<version>-preferredversion` copy and each item is passed once, except when the
/// preferred-version copy comes first in the tarball: then the plain copy is passed again
/// afterwards, with the same sequence number, and replaces it. The paths seen so far are
/// remembered (in a hash map: ordered maps spent most of the reading time comparing paths with
/// long common prefixes), not their data; [`for_each_entry`] remembers only the last few.
/// Other entries are ignored.
///
/// The whole stream is read, including the gzip trailer (CRC and length), and
/// `metadata/version` is checked at the end. Items are passed before those checks can finish,
/// so whatever `item` did is to be trusted only when this returns `Ok`. An error from `item`
/// stops the read and is returned.
pub fn for_each_item<R, F>(input: R, mut item: F) -> Result<(), TarballError>
where
    R: Read,
    F: FnMut(usize, ItemPath, Vec<u8>) -> Result<(), TarballError>,
{
    // Path -> its sequence number and whether the copy passed was the plain one.
    let mut seen: HashMap<ItemPath, (usize, bool)> = HashMap::new();
    walk(input, |path, plain, data| {
        let seq = match seen.get(&path) {
            Some((_, true)) => return Ok(()),
            Some((_, false)) if !plain => return Ok(()),
            Some((seq, false)) => *seq,
            None => seen.len(),
        };
        let data = data.read()?;
        seen.insert(path.clone(), (seq, plain));
        item(seq, path, data)
    })
}

/// How many recent paths [`for_each_entry`] remembers.
const RECENT_PATHS: usize = 1024;

/// Reads a Velero tarball as a stream, as [`for_each_item`] does, but remembers only the last
/// [`RECENT_PATHS`] item paths, so its memory does not grow with the tarball. It calls `entry`
/// with a position (counting the calls), the normalised path, whether this is the plain copy
/// (not a `<version>-preferredversion` one) and the JSON.
///
/// A copy of an item is left out when a copy among the recent paths already decides the item
/// under [`for_each_item`]'s rule (an earlier plain copy, or an earlier preferred-version copy
/// when this is one too). That catches the copies Velero and we write, one right after the
/// other; copies further apart are all passed, and the caller resolves them by the same rule:
/// per path, the first plain copy, else the first copy, at the position of the first copy.
pub fn for_each_entry<R, F>(input: R, mut entry: F) -> Result<(), TarballError>
where
    R: Read,
    F: FnMut(u64, ItemPath, bool, Vec<u8>) -> Result<(), TarballError>,
{
    // Recent path -> whether its plain copy was passed; and the order they came in.
    let mut recent: HashMap<ItemPath, bool> = HashMap::new();
    let mut order: VecDeque<ItemPath> = VecDeque::new();
    let mut pos = 0;
    walk(input, |path, plain, data| {
        match recent.get_mut(&path) {
            Some(true) => return Ok(()),
            Some(false) if !plain => return Ok(()),
            Some(seen) => *seen = true,
            None => {
                if order.len() == RECENT_PATHS
                    && let Some(oldest) = order.pop_front()
                {
                    recent.remove(&oldest);
                }
                recent.insert(path.clone(), plain);
                order.push_back(path.clone());
            }
        }
        let data = data.read()?;
        entry(pos, path, plain, data)?;
        pos += 1;
        Ok(())
    })
}

/// The body of the tar entry being passed, read only if wanted.
struct EntryData<'a> {
    input: &'a mut dyn Read,
    size: u64,
}

impl EntryData<'_> {
    fn read(self) -> Result<Vec<u8>, TarballError> {
        let mut data = Vec::with_capacity(self.size as usize);
        self.input.read_to_end(&mut data)?;
        Ok(data)
    }
}

/// Reads a tarball and calls `item` with the normalised path of every item entry, whether it
/// is the plain copy, and its unread body; then reads to the end of the gzip stream and checks
/// the format version.
fn walk<R, F>(input: R, mut item: F) -> Result<(), TarballError>
where
    R: Read,
    F: FnMut(ItemPath, bool, EntryData<'_>) -> Result<(), TarballError>,
{
    let mut archive = tar::Archive::new(GzDecoder::new(input));
    let mut version: Option<String> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let size = entry.header().size()?;
        if size > MAX_ENTRY {
            return Err(TarballError::TooLarge { path, size });
        }
        if path == VERSION_FILE {
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data)?;
            version = Some(String::from_utf8_lossy(&data).trim().to_string());
            continue;
        }
        let Ok(mut parsed) = ItemPath::parse(&path) else {
            continue;
        };
        let plain = parsed.version_dir.take().is_none();
        item(
            parsed,
            plain,
            EntryData {
                input: &mut entry,
                size,
            },
        )?;
    }
    // tar stops at its end-of-archive blocks; read the gzip stream to its end so its CRC and
    // length trailer are checked and a truncated or altered tail is refused too.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    match version.as_deref() {
        Some(v) if v.starts_with("1.") => Ok(()),
        _ => Err(TarballError::Version { found: version }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_file_is_written_as_velero_writes_it() {
        let bytes = TarballWriter::new(Vec::new()).unwrap().finish().unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_string_lossy(), VERSION_FILE);
        let mut content = String::new();
        std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
        assert_eq!(content, "1.1.0\n");
    }

    fn item(resource: &str, group: &str, ns: Option<&str>, name: &str) -> ItemPath {
        ItemPath {
            resource: resource.into(),
            group: group.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
            version_dir: None,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = TarballWriter::new(Vec::new()).unwrap();
        w.add_item(
            &item("configmaps", "", Some("app"), "a"),
            "v1",
            br#"{"a":1}"#,
        )
        .unwrap();
        w.add_item(
            &item("deployments", "apps", Some("app"), "web"),
            "v1",
            br#"{"d":2}"#,
        )
        .unwrap();
        w.add_item(&item("namespaces", "", None, "app"), "v1", br#"{"n":3}"#)
            .unwrap();
        assert_eq!(w.items(), 3);
        w.finish().unwrap()
    }

    #[test]
    fn writes_both_copies_and_reads_each_item_once() {
        let gz = sample();
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(GzDecoder::new(&gz[..]));
        for e in archive.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(names[0], "metadata/version");
        assert!(names.contains(&"resources/configmaps/namespaces/app/a.json".to_string()));
        assert!(names.contains(
            &"resources/deployments.apps/v1-preferredversion/namespaces/app/web.json".to_string()
        ));
        assert!(names.contains(&"resources/namespaces/cluster/app.json".to_string()));
        let items = read_tarball(&gz[..]).unwrap();
        assert_eq!(items.len(), 3);
        let web = items.iter().find(|i| i.path.name == "web").unwrap();
        assert_eq!(web.data, br#"{"d":2}"#);
        assert_eq!(web.path.version_dir, None);
    }

    /// A tarball with exactly these entries, in this order.
    fn raw(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    /// Every call `for_each_item` makes, in order.
    fn calls(gz: &[u8]) -> Result<Vec<(String, String)>, TarballError> {
        let mut out = Vec::new();
        for_each_item(gz, |_, path, data| {
            out.push((path.to_path()?, String::from_utf8(data).unwrap()));
            Ok(())
        })?;
        Ok(out)
    }

    /// The sequence number of every call, in order.
    fn sequence_numbers(gz: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        for_each_item(gz, |seq, _, _| {
            out.push(seq);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn streams_each_item_of_the_plain_and_preferred_layouts() {
        let got = calls(&sample()).unwrap();
        assert_eq!(
            got,
            [
                ("resources/configmaps/namespaces/app/a.json", r#"{"a":1}"#),
                (
                    "resources/deployments.apps/namespaces/app/web.json",
                    r#"{"d":2}"#
                ),
                ("resources/namespaces/cluster/app.json", r#"{"n":3}"#),
            ]
            .map(|(p, d)| (p.to_string(), d.to_string()))
        );
        let only_preferred = raw(&[
            ("metadata/version", "1.1.0"),
            (
                "resources/secrets/v1-preferredversion/namespaces/x/s.json",
                "{}",
            ),
            ("resources/secrets/v1-preferredversion/cluster/c.json", "[]"),
            ("other/file.txt", "ignored"),
        ]);
        let got = calls(&only_preferred).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "resources/secrets/namespaces/x/s.json");
        assert_eq!(
            got[1],
            ("resources/secrets/cluster/c.json".into(), "[]".into())
        );
    }

    #[test]
    fn the_plain_copy_wins_whatever_the_order() {
        let preferred_first = raw(&[
            ("metadata/version", "1.1.0"),
            (
                "resources/secrets/v1-preferredversion/namespaces/x/s.json",
                "pref",
            ),
            ("resources/secrets/namespaces/x/s.json", "plain"),
            (
                "resources/secrets/v1-preferredversion/namespaces/x/s.json",
                "pref again",
            ),
        ]);
        let got = calls(&preferred_first).unwrap();
        // Passed twice under one sequence number; the last (plain) copy is the one to keep.
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, "plain");
        assert_eq!(sequence_numbers(&preferred_first), [0, 0]);
        assert_eq!(sequence_numbers(&sample()), [0, 1, 2]);
        let items = read_tarball(&preferred_first[..]).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].data, b"plain");

        let plain_first = raw(&[
            ("resources/secrets/namespaces/x/s.json", "plain"),
            (
                "resources/secrets/v1-preferredversion/namespaces/x/s.json",
                "pref",
            ),
            ("resources/secrets/namespaces/x/s.json", "plain again"),
            ("metadata/version", "1.1.0"),
        ]);
        let got = calls(&plain_first).unwrap();
        assert_eq!(
            got,
            [(
                "resources/secrets/namespaces/x/s.json".into(),
                "plain".into()
            )]
        );
    }

    /// Every call `for_each_entry` makes, in order: position, path, plain, data.
    fn entries(gz: &[u8]) -> Vec<(u64, String, bool, String)> {
        let mut out = Vec::new();
        for_each_entry(gz, |pos, path, plain, data| {
            out.push((
                pos,
                path.to_path()?,
                plain,
                String::from_utf8(data).unwrap(),
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_bounded_reader_leaves_out_nearby_copies_and_passes_distant_ones() {
        let got = entries(&sample());
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|(_, _, plain, _)| *plain));
        assert_eq!(got[2].0, 2);
        let s = "resources/secrets/namespaces/x/s.json";
        let pref = "resources/secrets/v1-preferredversion/namespaces/x/s.json";
        let preferred_first = raw(&[
            ("metadata/version", "1.1.0"),
            (pref, "pref"),
            (pref, "pref again"),
            (s, "plain"),
            (s, "plain again"),
            (pref, "pref once more"),
        ]);
        assert_eq!(
            entries(&preferred_first),
            [
                (0, s.into(), false, "pref".into()),
                (1, s.into(), true, "plain".into())
            ]
        );
        // A copy further away than the recent paths reach is passed for the caller to resolve.
        let mut far = vec![("metadata/version".to_string(), "1.1.0".to_string())];
        far.push((pref.into(), "pref".into()));
        for i in 0..RECENT_PATHS {
            far.push((
                format!("resources/configmaps/namespaces/x/c{i}.json"),
                "{}".into(),
            ));
        }
        far.push((s.into(), "plain".into()));
        far.push((pref.into(), "pref again".into()));
        let far: Vec<(&str, &str)> = far.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect();
        let got = entries(&raw(&far));
        assert_eq!(got.len(), RECENT_PATHS + 2);
        assert_eq!(got[0], (0, s.into(), false, "pref".into()));
        assert_eq!(
            got[RECENT_PATHS + 1],
            ((RECENT_PATHS + 1) as u64, s.into(), true, "plain".into())
        );
    }

    #[test]
    fn streaming_refuses_truncated_flipped_versionless_or_foreign_input() {
        let gz = sample();
        assert!(calls(&gz[..gz.len() - 10]).is_err());
        // Only the gzip trailer missing: all items are readable, the read still fails.
        assert!(calls(&gz[..gz.len() - 4]).is_err());
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        assert!(calls(&flipped).is_err());
        let versionless = raw(&[("resources/secrets/namespaces/x/s.json", "{}")]);
        assert!(matches!(
            calls(&versionless),
            Err(TarballError::Version { found: None })
        ));
        let foreign = raw(&[("metadata/version", "2.0.0")]);
        assert!(matches!(
            calls(&foreign),
            Err(TarballError::Version { found: Some(v) }) if v == "2.0.0"
        ));
        assert!(calls(b"not gzip at all").is_err());
    }

    #[test]
    fn an_error_from_the_callback_stops_the_read() {
        let mut n = 0;
        let err = for_each_item(&sample()[..], |_, _, _| {
            n += 1;
            Err(io::Error::other("disk full").into())
        })
        .unwrap_err();
        assert_eq!(n, 1);
        assert!(err.to_string().contains("disk full"));
    }

    #[test]
    fn reads_a_tarball_with_only_preferred_version_copies() {
        let gz = raw(&[
            ("metadata/version", "1.1.0"),
            (
                "resources/secrets/v1-preferredversion/namespaces/x/s.json",
                "{}",
            ),
        ]);
        let items = read_tarball(&gz[..]).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].path.resource, "secrets");
    }

    #[test]
    fn truncated_corrupt_or_versionless_tarballs_are_refused() {
        let gz = sample();
        assert!(read_tarball(&gz[..gz.len() - 10]).is_err());
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        assert!(read_tarball(&flipped[..]).is_err());
        let empty = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()))
            .into_inner()
            .unwrap()
            .finish()
            .unwrap();
        assert!(matches!(
            read_tarball(&empty[..]),
            Err(TarballError::Version { found: None })
        ));
    }
}
