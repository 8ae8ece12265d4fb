//! Client-side encryption at rest with [age](https://age-encryption.org/v1) (X25519 recipients).
//!
//! Set [`Encryption`] on a [`Repository`](crate::Repository) and every artifact any writer puts
//! through it is encrypted while it streams, before it leaves the process; set [`Identities`]
//! and every reader gets plaintext back. Nothing else changes for callers: the encryption is
//! this crate's concern, once.
//!
//! - **What is stored** is a standard age v1 file, so `age -d -i key.txt` decrypts any artifact
//!   into exactly what an unencrypted backup would hold.
//! - **What the manifest records** per artifact: that it is encrypted, the scheme (`age`) and
//!   the [`Fingerprint`]s of its recipients, never a key. Its size and SHA-256 are those of the
//!   *stored* (encrypted) bytes, so [`Repository::verify`](crate::Repository::verify) works
//!   without keys; age's own authentication (a MAC per 64 KiB chunk and a marked last chunk)
//!   catches tampering and truncation while decrypting.
//! - **Reading without a matching identity** fails before the artifact is fetched, with an error
//!   naming the fingerprints of the recipients that can read it.
//! - **Memory stays bounded**: plaintext is encrypted in slices of [`ENCRYPT_SLICE`] bytes and
//!   decrypted one age chunk (64 KiB) at a time; nothing holds a whole artifact.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{AsyncReadExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, StorageError};
use crate::manifest::{ArtifactEncryption, EncryptionScheme};
use crate::upload::Source;

/// Plaintext is read and encrypted in slices of this size (four age chunks): large enough that
/// per-slice overhead vanishes, small enough that encryption adds well under 1 MiB to an
/// upload's memory.
pub const ENCRYPT_SLICE: usize = 256 * 1024;

/// Plaintext is read back from the decryptor in pieces of this size (age's chunk size).
const DECRYPT_READ: usize = 64 * 1024;

/// Hex characters in a [`Fingerprint`].
pub const FINGERPRINT_LEN: usize = 16;

/// A short, public name for an age recipient, recorded in manifests and shown in errors.
///
/// Defined as the first 16 lower-case hex characters (64 bits) of the SHA-256 of the
/// recipient's canonical bech32 string (`age1…`, lower case, as `age-keygen -y` prints it):
///
/// ```sh
/// printf %s age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p | sha256sum | cut -c1-16
/// ```
///
/// It identifies which key a backup needs without revealing anything a stolen manifest could
/// be used for (the recipient itself is public anyway).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    fn of(recipient: &age::x25519::Recipient) -> Self {
        let digest = Sha256::digest(recipient.to_string().as_bytes());
        Fingerprint(hex::encode(&digest[..FINGERPRINT_LEN / 2]))
    }

    /// The 16 hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let valid = value.len() == FINGERPRINT_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Fingerprint(value))
        } else {
            Err(format!(
                "recipient fingerprint `{}` is not {FINGERPRINT_LEN} lower-case hex characters",
                value.escape_debug()
            ))
        }
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> Self {
        f.0
    }
}

/// Joins fingerprints for messages: `a1b2…, c3d4…`.
pub(crate) fn list(fingerprints: &[Fingerprint]) -> String {
    fingerprints
        .iter()
        .map(Fingerprint::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An age X25519 recipient (a public key, `age1…`), as `age-keygen` prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    key: age::x25519::Recipient,
    fingerprint: Fingerprint,
}

impl Recipient {
    fn new(key: age::x25519::Recipient) -> Self {
        let fingerprint = Fingerprint::of(&key);
        Recipient { key, fingerprint }
    }

    /// Its [`Fingerprint`].
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Parses a recipients file as `age -R` reads it: one recipient per line, blank lines and
    /// lines starting with `#` ignored. Only X25519 recipients (`age1…`) are accepted; the error
    /// names the line.
    pub fn parse_list(text: &str) -> Result<Vec<Recipient>> {
        let mut out = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(parse_recipient(line, Some(index + 1))?);
        }
        Ok(out)
    }
}

fn parse_recipient(text: &str, line: Option<usize>) -> Result<Recipient> {
    let shown: String = text
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string();
    let invalid = |reason: String| StorageError::InvalidRecipient {
        value: shown.clone(),
        line,
        reason,
    };
    if !text.to_ascii_lowercase().starts_with("age1") {
        let hint = if text.starts_with("AGE-SECRET-KEY-") {
            "this is a secret key (an identity); give its public key, `age-keygen -y KEYFILE` prints it"
        } else if text.starts_with("ssh-") {
            "SSH keys are not supported; use an age X25519 key from `age-keygen`"
        } else {
            "an age X25519 recipient starts with `age1`; `age-keygen` makes one"
        };
        // Never echo what may be a secret key.
        return Err(StorageError::InvalidRecipient {
            value: if text.starts_with("AGE-SECRET-KEY-") {
                "AGE-SECRET-KEY-…".into()
            } else {
                shown.clone()
            },
            line,
            reason: hint.into(),
        });
    }
    age::x25519::Recipient::from_str(text)
        .map(Recipient::new)
        .map_err(|e| {
            invalid(format!(
                "{e} (post-quantum and plugin recipients are not supported)"
            ))
        })
}

impl FromStr for Recipient {
    type Err = StorageError;

    /// Parses one recipient, `age1…`.
    fn from_str(s: &str) -> Result<Self> {
        parse_recipient(s.trim(), None)
    }
}

impl fmt::Display for Recipient {
    /// The canonical bech32 form, `age1…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({} {})", self.key, self.fingerprint)
    }
}

/// The recipients new artifacts are encrypted to (any one of their identities can read them).
/// Set it with [`Repository::with_encryption`](crate::Repository::with_encryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    recipients: Vec<Recipient>,
}

impl Encryption {
    /// Encrypts to these recipients (duplicates removed); at least one is needed.
    pub fn new(recipients: impl IntoIterator<Item = Recipient>) -> Result<Self> {
        let mut unique: Vec<Recipient> = Vec::new();
        for r in recipients {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        if unique.is_empty() {
            return Err(StorageError::NoRecipients);
        }
        Ok(Encryption { recipients: unique })
    }

    /// Encrypts to the recipients of a recipients file ([`Recipient::parse_list`]), e.g. the
    /// value of a Secret key.
    pub fn from_recipients_file(text: &str) -> Result<Self> {
        Self::new(Recipient::parse_list(text)?)
    }

    /// The recipients.
    pub fn recipients(&self) -> &[Recipient] {
        &self.recipients
    }

    /// Their fingerprints, in order.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.recipients
            .iter()
            .map(|r| r.fingerprint.clone())
            .collect()
    }

    /// What the manifest records for an artifact encrypted with this.
    pub(crate) fn record(&self) -> ArtifactEncryption {
        ArtifactEncryption {
            scheme: EncryptionScheme::Age,
            recipients: self.fingerprints(),
        }
    }

    /// Wraps `source` into a stream of age ciphertext (header first), encrypting
    /// [`ENCRYPT_SLICE`] bytes of plaintext at a time.
    pub(crate) fn encrypt<'a>(
        &self,
        source: Source<'a>,
        what: &str,
    ) -> Result<BoxStream<'a, io::Result<Bytes>>> {
        let encrypt_error = |reason: String| StorageError::Encrypt {
            what: what.to_string(),
            reason,
        };
        let encryptor = age::Encryptor::with_recipients(
            self.recipients
                .iter()
                .map(|r| &r.key as &dyn age::Recipient),
        )
        .map_err(|e| encrypt_error(e.to_string()))?;
        let sink = Sink::default();
        let writer = encryptor
            .wrap_output(sink.clone())
            .map_err(|e| encrypt_error(e.to_string()))?;
        let state = Encrypting {
            source,
            writer: Some(writer),
            sink,
            plain: BytesMut::with_capacity(ENCRYPT_SLICE),
            carry: None,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let writer = state.writer.as_mut()?;
            state.plain.clear();
            let more = match state
                .source
                .fill(&mut state.plain, ENCRYPT_SLICE, &mut state.carry)
                .await
            {
                Ok(more) => more,
                Err(e) => {
                    state.writer = None;
                    return Some((Err(e), state));
                }
            };
            let mut result = writer.write_all(&state.plain);
            if !more && result.is_ok() {
                // Only `finish` writes the last chunk, marked as last: without it a reader
                // sees a truncated file.
                result = state.writer.take().map_or(Ok(()), |w| w.finish().map(drop));
            }
            if let Err(e) = result {
                state.writer = None;
                return Some((Err(e), state));
            }
            Some((Ok(state.sink.take()), state))
        })
        .boxed())
    }
}

struct Encrypting<'a> {
    source: Source<'a>,
    writer: Option<age::stream::StreamWriter<Sink>>,
    sink: Sink,
    plain: BytesMut,
    carry: Option<Bytes>,
}

/// Where age writes ciphertext; drained after every slice. (age's writer owns its output and
/// offers no access to it until `finish`, hence the shared buffer.)
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn take(&self) -> Bytes {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let capacity = buf.capacity();
        Bytes::from(std::mem::replace(&mut *buf, Vec::with_capacity(capacity)))
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The age identities (secret keys) artifacts are decrypted with. Set them with
/// [`Repository::with_identities`](crate::Repository::with_identities).
///
/// `Debug` shows fingerprints only; the keys are zeroed when dropped (age's own types).
#[derive(Clone)]
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
    fingerprints: Vec<Fingerprint>,
}

impl Identities {
    fn new(keys: Vec<age::x25519::Identity>) -> Self {
        let fingerprints = keys
            .iter()
            .map(|k| Fingerprint::of(&k.to_public()))
            .collect();
        Identities { keys, fingerprints }
    }

    /// Parses an age identity file as `age -d -i` reads it (what `age-keygen` writes): one
    /// `AGE-SECRET-KEY-1…` per line, blank lines and `#` comments ignored. Errors name the line,
    /// never its content.
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let reason = if line.starts_with("age1") {
                "it holds a recipient (public key); an identity file holds the secret key `AGE-SECRET-KEY-1…`"
            } else if line.starts_with("AGE-PLUGIN-") || line.starts_with("AGE-SECRET-KEY-PQ-") {
                "plugin and post-quantum identities are not supported; use an X25519 key from `age-keygen`"
            } else if line.starts_with("-----BEGIN") {
                "SSH and passphrase-protected identity files are not supported; use an unencrypted `age-keygen` key"
            } else {
                "it is not an age X25519 identity `AGE-SECRET-KEY-1…`"
            };
            match age::x25519::Identity::from_str(line) {
                Ok(key) => keys.push(key),
                Err(_) => {
                    return Err(StorageError::InvalidIdentity {
                        reason: format!("line {}: {reason}", index + 1),
                    });
                }
            }
        }
        if keys.is_empty() {
            return Err(StorageError::InvalidIdentity {
                reason: "it holds no identity (`AGE-SECRET-KEY-1…` line)".into(),
            });
        }
        Ok(Self::new(keys))
    }

    /// Adds the identities of `other` (e.g. from a second identity file).
    pub fn extend(&mut self, other: Identities) {
        self.keys.extend(other.keys);
        self.fingerprints.extend(other.fingerprints);
    }

    /// One new random X25519 identity (for tests, benchmarks and key rotation tooling).
    pub fn generate() -> Self {
        Self::new(vec![age::x25519::Identity::generate()])
    }

    /// These identities as an identity file, in `age-keygen`'s format. **The text holds the
    /// secret keys**: write it only where keys belong.
    pub fn to_identity_file(&self) -> String {
        let mut out = String::new();
        for key in &self.keys {
            out.push_str(&format!(
                "# public key: {}\n{}\n",
                key.to_public(),
                key.to_string().expose_secret()
            ));
        }
        out
    }

    /// The recipients (public keys) of these identities.
    pub fn recipients(&self) -> Vec<Recipient> {
        self.keys
            .iter()
            .map(|k| Recipient::new(k.to_public()))
            .collect()
    }

    /// The fingerprints of their recipients.
    pub fn fingerprints(&self) -> &[Fingerprint] {
        &self.fingerprints
    }

    /// Fails unless one of these identities (if any) is a recipient of `encryption`, naming
    /// the fingerprints that would be.
    pub(crate) fn check(
        identities: Option<&Self>,
        encryption: &ArtifactEncryption,
        backup: &str,
        artifact: &str,
    ) -> Result<()> {
        let Some(ids) = identities else {
            return Err(StorageError::IdentityRequired {
                backup: backup.into(),
                artifact: artifact.into(),
                recipients: list(&encryption.recipients),
            });
        };
        if ids
            .fingerprints
            .iter()
            .any(|f| encryption.recipients.contains(f))
        {
            return Ok(());
        }
        Err(StorageError::NoMatchingIdentity {
            backup: backup.into(),
            artifact: artifact.into(),
            recipients: list(&encryption.recipients),
            offered: list(&ids.fingerprints),
        })
    }

    /// Decrypts a verified stream of stored bytes. The header is read (and the file key
    /// unwrapped) before this returns, so a wrong key or a file that is not age fails here,
    /// before any plaintext is handed out.
    pub(crate) async fn decrypt(
        &self,
        stored: BoxStream<'static, Result<Bytes, StorageError>>,
        encryption: &ArtifactEncryption,
        backup: &str,
        artifact: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>> {
        let fail = Failure {
            backup: backup.to_string(),
            artifact: artifact.to_string(),
            recipients: list(&encryption.recipients),
            offered: list(&self.fingerprints),
        };
        let input = stored.map_err(io::Error::other).into_async_read();
        let decryptor = age::Decryptor::new_async_buffered(input)
            .await
            .map_err(|e| fail.decrypt_error(e))?;
        let reader = decryptor
            .decrypt_async(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| fail.decrypt_error(e))?;
        let fail = Arc::new(fail);
        Ok(futures::stream::unfold(Some(reader), move |state| {
            let fail = Arc::clone(&fail);
            async move {
                let mut reader = state?;
                let mut buf = vec![0u8; DECRYPT_READ];
                let mut filled = 0;
                // Fill a whole piece: fewer, larger chunks for the consumer.
                while filled < buf.len() {
                    match reader.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Some((Err(fail.io_error(e)), None)),
                    }
                }
                if filled == 0 {
                    return None;
                }
                buf.truncate(filled);
                let next = (filled == DECRYPT_READ).then_some(reader);
                Some((Ok(Bytes::from(buf)), next))
            }
        })
        .boxed())
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("fingerprints", &self.fingerprints)
            .finish_non_exhaustive()
    }
}

/// Turns age's and the underlying stream's errors into ours for one artifact.
struct Failure {
    backup: String,
    artifact: String,
    recipients: String,
    offered: String,
}

impl Failure {
    /// A storage verdict (checksum, truncation, outage) travelling inside an I/O error comes
    /// back as itself: it names the real cause. Anything else is age refusing the data.
    fn io_error(&self, e: io::Error) -> StorageError {
        if !e.get_ref().is_some_and(|inner| inner.is::<StorageError>()) {
            return self.corrupt(e.to_string());
        }
        let text = e.to_string();
        match e.into_inner().map(|inner| inner.downcast::<StorageError>()) {
            Some(Ok(storage)) => *storage,
            _ => self.corrupt(text),
        }
    }

    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::Decrypt {
            backup: self.backup.clone(),
            artifact: self.artifact.clone(),
            reason,
        }
    }

    fn decrypt_error(&self, e: age::DecryptError) -> StorageError {
        match e {
            age::DecryptError::Io(e) => self.io_error(e),
            age::DecryptError::NoMatchingKeys => StorageError::NoMatchingIdentity {
                backup: self.backup.clone(),
                artifact: self.artifact.clone(),
                recipients: self.recipients.clone(),
                offered: self.offered.clone(),
            },
            age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
                self.corrupt("it is not an age-encrypted file (its header is invalid)".into())
            }
            age::DecryptError::InvalidMac => {
                self.corrupt("its age header was altered (header MAC mismatch)".into())
            }
            other => self.corrupt(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_the_documented_prefix_of_sha256() {
        let r: Recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
            .parse()
            .unwrap();
        let expected = hex::encode(Sha256::digest(
            b"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        ));
        assert_eq!(r.fingerprint().as_str(), &expected[..16]);
        // The canonical (lower-case) form is what is hashed, however it was written.
        let upper: Recipient = "AGE1QL3Z7HJY54PW3HYWW5AYYFG7ZQGVC7W3J2ELW8ZMRJ2KG5SFN9AQMCAC8P"
            .parse()
            .unwrap();
        assert_eq!(upper.fingerprint(), r.fingerprint());
        assert_eq!(upper.to_string(), r.to_string());
        // An identity's fingerprints are those of its recipients.
        let ids = Identities::generate();
        assert_eq!(
            ids.fingerprints(),
            &[ids.recipients()[0].fingerprint().clone()]
        );
    }

    #[test]
    fn fingerprints_deserialise_only_when_well_formed() {
        for bad in [
            "",
            "0123",
            "0123456789ABCDEF",
            "0123456789abcdeg",
            "0123456789abcdef0",
        ] {
            assert!(Fingerprint::try_from(bad.to_string()).is_err(), "{bad}");
        }
        assert!(Fingerprint::try_from("0123456789abcdef".to_string()).is_ok());
    }

    #[test]
    fn recipients_files_read_as_age_reads_them() {
        let a = Identities::generate().recipients().remove(0);
        let b = Identities::generate().recipients().remove(0);
        let text = format!("# team keys\n\n{a}\n  {b}  \r\n# end\n");
        let parsed = Recipient::parse_list(&text).unwrap();
        assert_eq!(parsed, vec![a.clone(), b.clone()]);
        let enc = Encryption::new([a.clone(), b, a]).unwrap();
        assert_eq!(enc.recipients().len(), 2, "duplicates removed");
        assert!(matches!(
            Encryption::new([]),
            Err(StorageError::NoRecipients)
        ));
        assert!(matches!(
            Encryption::from_recipients_file("# nothing\n"),
            Err(StorageError::NoRecipients)
        ));
    }

    #[test]
    fn bad_recipients_are_refused_with_the_line_and_without_secrets() {
        let secret = Identities::generate().to_identity_file();
        let secret_line = secret.lines().nth(1).unwrap();
        for (input, needle) in [
            ("age1notakey", "age1notakey"),
            ("ssh-ed25519 AAAAC3Nz", "SSH keys are not supported"),
            ("hello", "starts with `age1`"),
            (secret_line, "secret key"),
        ] {
            let err = Recipient::parse_list(&format!("# c\n{input}\n")).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, StorageError::InvalidRecipient { line: Some(2), .. }),
                "{text}"
            );
            assert!(text.contains(needle), "{text}");
            assert!(text.contains("line 2"), "{text}");
            assert!(
                !text.contains(&secret_line[20..]),
                "never echoes a secret: {text}"
            );
        }
        assert!(
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8q"
                .parse::<Recipient>()
                .is_err(),
            "checksum"
        );
    }

    #[test]
    fn identity_files_parse_like_age_keygen_output_and_never_echo_lines() {
        let ids = Identities::generate();
        let file = format!(
            "# created: 2026-01-01T00:00:00Z\n{}",
            ids.to_identity_file()
        );
        let back = Identities::parse(&file).unwrap();
        assert_eq!(back.fingerprints(), ids.fingerprints());
        assert!(!format!("{back:?}").contains("AGE-SECRET-KEY"));

        let secret = ids.to_identity_file();
        let key = secret.lines().nth(1).unwrap();
        // One changed character: bech32's checksum catches it. The replacement
        // differs from the original, or a key ending in `Q` would stay valid.
        let last = if key.ends_with('Q') { 'P' } else { 'Q' };
        let broken = format!("# x\n{}{last}\n", &key[..key.len() - 1]);
        let err = Identities::parse(&broken).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains(&key[16..40]), "{err}");
        let recipient = ids.recipients()[0].to_string();
        let err = Identities::parse(&recipient).unwrap_err().to_string();
        assert!(err.contains("public key"), "{err}");
        let err = Identities::parse("# only comments\n\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no identity"), "{err}");
    }
}
