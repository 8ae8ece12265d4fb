//! What a restore did (or, in a dry run, would do) to each item, for people and scripts.
//!
//! The per-item outcomes are kept in an anonymous temporary file ([`ItemOutcomes`]), with a
//! count per [`Action`] in memory, so a report of any size costs a few KiB of memory; they are
//! read back (and serialised, as a JSON array) from the file.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

/// What happened (or, in a dry run, would happen) to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Created (dry run: would be created).
    Created,
    /// Existing object patched to match the backup (policy `update`).
    Updated,
    /// Left alone: it exists (policy `none`) or is never restored.
    Skipped,
    /// Creating it failed; see the results.
    Failed,
}

impl Action {
    const ALL: [Action; 4] = [
        Action::Created,
        Action::Updated,
        Action::Skipped,
        Action::Failed,
    ];

    fn code(self) -> u8 {
        match self {
            Action::Created => 0,
            Action::Updated => 1,
            Action::Skipped => 2,
            Action::Failed => 3,
        }
    }
}

/// One item's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemOutcome {
    /// `resource.group`.
    pub resource: String,
    /// Target namespace (after mapping).
    pub namespace: Option<String>,
    /// Name (after mapping, for namespaces).
    pub name: String,
    /// What happened.
    pub action: Action,
}

/// Outcomes written to the file in one go (and the most held in memory before that).
const PENDING_BYTES: usize = 64 * 1024;
/// Read buffer when reading outcomes back.
const READ_BUFFER: usize = 64 * 1024;

/// Every item's outcome, in the order they were added: kept in an anonymous temporary file
/// (the last few KiB in memory), with a count per action. Cloning is cheap and the clone sees
/// the outcomes added so far. Serialised as a JSON array of [`ItemOutcome`].
#[derive(Clone, Default)]
pub struct ItemOutcomes {
    file: Option<Arc<File>>,
    /// Bytes of the file holding outcomes.
    written: u64,
    /// Encoded outcomes not yet written.
    pending: Vec<u8>,
    len: usize,
    counts: [usize; 4],
}

impl ItemOutcomes {
    /// Adds one outcome. Should the temporary file fail (the disk is full), the outcomes stay
    /// in memory instead, and a warning says so.
    pub fn push(&mut self, outcome: ItemOutcome) {
        self.counts[usize::from(outcome.action.code())] += 1;
        self.len += 1;
        encode(&mut self.pending, &outcome);
        if self.pending.len() >= PENDING_BYTES
            && let Err(e) = self.write_pending()
        {
            tracing::warn!(error = %e, "keeping restore outcomes in memory: the temporary file failed");
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        let file = match &self.file {
            Some(file) => file,
            None => self.file.insert(Arc::new(tempfile::tempfile()?)),
        };
        file.write_all_at(&self.pending, self.written)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// How many outcomes there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many items ended with `action`.
    pub fn count(&self, action: Action) -> usize {
        self.counts[usize::from(action.code())]
    }

    /// Reads the outcomes back, in order; an error reading the temporary file ends the
    /// iteration with it.
    pub fn try_iter(&self) -> impl Iterator<Item = io::Result<ItemOutcome>> + use<> {
        let stored: Box<dyn Read + Send> = match &self.file {
            Some(file) => Box::new(BufReader::with_capacity(
                READ_BUFFER,
                Stored {
                    file: Arc::clone(file),
                    pos: 0,
                    end: self.written,
                },
            )),
            None => Box::new(io::empty()),
        };
        let mut input = stored.chain(io::Cursor::new(self.pending.clone()));
        let mut left = self.len;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let next = decode(&mut input);
            if next.is_err() {
                left = 0;
            }
            Some(next)
        })
    }

    /// Reads the outcomes back, in order. Should the temporary file fail to read, the
    /// iteration ends early and a warning says so ([`ItemOutcomes::try_iter`] returns the
    /// error).
    pub fn iter(&self) -> impl Iterator<Item = ItemOutcome> + use<> {
        self.try_iter().map_while(|outcome| {
            outcome
                .inspect_err(|e| tracing::warn!(error = %e, "reading restore outcomes failed"))
                .ok()
        })
    }
}

impl FromIterator<ItemOutcome> for ItemOutcomes {
    fn from_iter<I: IntoIterator<Item = ItemOutcome>>(iter: I) -> Self {
        let mut outcomes = ItemOutcomes::default();
        for outcome in iter {
            outcomes.push(outcome);
        }
        outcomes
    }
}

impl fmt::Debug for ItemOutcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ItemOutcomes");
        s.field("len", &self.len);
        for action in Action::ALL {
            s.field(&format!("{action:?}"), &self.count(action));
        }
        s.finish()
    }
}

impl Serialize for ItemOutcomes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for outcome in self.try_iter() {
            let outcome = outcome.map_err(|e| {
                serde::ser::Error::custom(format!("reading restore outcomes failed: {e}"))
            })?;
            seq.serialize_element(&outcome)?;
        }
        seq.end()
    }
}

/// `[pos, end)` of the outcomes' file, read with positioned reads.
struct Stored {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Stored {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(out: &mut Vec<u8>, outcome: &ItemOutcome) {
    out.push(outcome.action.code());
    put_str(out, &outcome.resource);
    match &outcome.namespace {
        None => out.push(0),
        Some(ns) => {
            out.push(1);
            put_str(out, ns);
        }
    }
    put_str(out, &outcome.name);
}

fn get_u8(input: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    input.read_exact(&mut b)?;
    Ok(b[0])
}

fn get_str(input: &mut impl Read) -> io::Result<String> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let mut s = vec![0; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut s)?;
    String::from_utf8(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn decode(input: &mut impl Read) -> io::Result<ItemOutcome> {
    let code = get_u8(input)?;
    let action = Action::ALL
        .into_iter()
        .find(|a| a.code() == code)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no action {code} in the restore outcomes"),
            )
        })?;
    let resource = get_str(input)?;
    let namespace = match get_u8(input)? {
        0 => None,
        _ => Some(get_str(input)?),
    };
    let name = get_str(input)?;
    Ok(ItemOutcome {
        resource,
        namespace,
        name,
        action,
    })
}

/// The detailed report of a restore, beyond the engine status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The backup restored from: the one named, or the one a schedule name resolved to.
    pub backup: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Every item considered, in restore order.
    pub items: ItemOutcomes,
    /// Errors and warnings, per namespace.
    pub results: crate::format::OperationResults,
    /// A drill's read-back of what it restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<super::verify::Verification>,
}

impl RestoreReport {
    /// How many items ended with `action`.
    pub fn count(&self, action: Action) -> usize {
        self.items.count(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(i: usize) -> ItemOutcome {
        ItemOutcome {
            resource: if i.is_multiple_of(5) {
                "namespaces".into()
            } else {
                "configmaps".into()
            },
            namespace: (!i.is_multiple_of(5)).then(|| format!("ns-{}", i % 7)),
            name: format!("item-{i}"),
            action: Action::ALL[i % 4],
        }
    }

    #[test]
    fn outcomes_read_back_from_disk_in_order_and_are_counted() {
        let n = 20_000;
        let mut outcomes = ItemOutcomes::default();
        for i in 0..n / 2 {
            outcomes.push(outcome(i));
        }
        // A clone sees what was added so far, and nothing added later.
        let half = outcomes.clone();
        for i in n / 2..n {
            outcomes.push(outcome(i));
        }
        assert!(outcomes.file.is_some(), "nothing was written to disk");
        assert!(outcomes.pending.len() < PENDING_BYTES);
        assert_eq!(outcomes.len(), n);
        assert_eq!(outcomes.count(Action::Skipped), n / 4);
        let all: Vec<ItemOutcome> = outcomes.iter().collect();
        assert_eq!(all, (0..n).map(outcome).collect::<Vec<_>>());
        assert_eq!(half.iter().count(), n / 2);
        assert_eq!(half.iter().last(), Some(outcome(n / 2 - 1)));
        let collected: ItemOutcomes = (0..10).map(outcome).collect();
        assert_eq!(collected.iter().nth(3), Some(outcome(3)));
        assert!(ItemOutcomes::default().iter().next().is_none());
    }

    #[test]
    fn a_report_serialises_its_items_as_an_array() {
        let report = RestoreReport {
            backup: "b".into(),
            items: (0..3).map(outcome).collect(),
            ..RestoreReport::default()
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["items"][1],
            serde_json::json!({"resource": "configmaps", "namespace": "ns-1", "name": "item-1", "action": "updated"})
        );
        assert_eq!(v["items"][0]["namespace"], serde_json::Value::Null);
        assert_eq!(report.count(Action::Created), 1);
    }
}
