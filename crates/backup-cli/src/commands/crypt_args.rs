//! The age options shared by the commands that write backups (`--encrypt-to`,
//! `--encrypt-to-file`) and those that read them (`--identity-file`). Files are read and keys
//! parsed before any connection is made, so a typo fails at once; the work itself is the
//! storage library's (`backup_storage::crypt`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backup_storage::{Encryption, Fingerprint, Identities, Recipient, Repository};
use clap::Args;

/// Largest key file read (age itself stops at 16 MiB); a bigger one is surely the wrong file.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// Whom new backups are encrypted to.
#[derive(Args, Default)]
pub struct EncryptArgs {
    /// Encrypt every stored file of the backup with age to this recipient (an X25519 public
    /// key `age1…`, as `age-keygen` prints it); repeatable. Any one recipient's identity can
    /// restore it; without one nobody can, so keep the identity safe.
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Encrypt to every recipient in this file: one `age1…` per line, blank lines and `#`
    /// comments ignored (as `age -R` reads it); repeatable, combines with --encrypt-to.
    #[arg(long = "encrypt-to-file", value_name = "FILE")]
    pub recipient_files: Vec<PathBuf>,
}

impl EncryptArgs {
    /// The encryption asked for, or `None` for an unencrypted backup.
    pub fn encryption(&self) -> Result<Option<Encryption>> {
        if self.recipients.is_empty() && self.recipient_files.is_empty() {
            return Ok(None);
        }
        let mut recipients = Vec::new();
        for text in &self.recipients {
            recipients.push(
                text.parse::<Recipient>()
                    .context("--encrypt-to needs an age recipient")?,
            );
        }
        for file in &self.recipient_files {
            let text = read_key_file(file, "recipients")?;
            let parsed = Recipient::parse_list(&text)
                .with_context(|| format!("--encrypt-to-file {}", file.display()))?;
            anyhow::ensure!(
                !parsed.is_empty(),
                "--encrypt-to-file {}: the file holds no recipient (`age1…` line)",
                file.display()
            );
            recipients.extend(parsed);
        }
        Ok(Some(Encryption::new(recipients)?))
    }

    /// `repo`, encrypting what it writes when recipients were given.
    pub fn apply(&self, repo: Repository) -> Result<Repository> {
        Ok(match self.encryption()? {
            Some(encryption) => repo.with_encryption(encryption),
            None => repo,
        })
    }
}

/// Which keys read encrypted backups.
#[derive(Args, Default)]
pub struct IdentityArgs {
    /// age identity file to decrypt encrypted backups with: secret keys `AGE-SECRET-KEY-1…`,
    /// one per line, `#` comments (as `age -d -i` reads it; `age-keygen -o key.txt` makes one);
    /// repeatable. Not needed for unencrypted backups.
    #[arg(long = "identity-file", value_name = "FILE")]
    pub identity_files: Vec<PathBuf>,
}

impl IdentityArgs {
    /// The identities given, or `None`.
    pub fn identities(&self) -> Result<Option<Identities>> {
        let mut all: Option<Identities> = None;
        for file in &self.identity_files {
            let text = read_key_file(file, "identity")?;
            let parsed = Identities::parse(&text)
                .with_context(|| format!("--identity-file {}", file.display()))?;
            match &mut all {
                Some(all) => all.extend(parsed),
                None => all = Some(parsed),
            }
        }
        Ok(all)
    }

    /// `repo`, decrypting what it reads when identities were given.
    pub fn apply(&self, repo: Repository) -> Result<Repository> {
        Ok(match self.identities()? {
            Some(identities) => repo.with_identities(identities),
            None => repo,
        })
    }
}

/// Fingerprints for people: `0123456789abcdef, fedcba9876543210`.
pub fn fingerprints(list: &[Fingerprint]) -> String {
    list.iter()
        .map(Fingerprint::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_key_file(path: &Path, what: &str) -> Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_KEY_FILE,
        "{what} file {} is {size} bytes; an age key file is a few hundred bytes, is it the right file?",
        path.display()
    );
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_no_encryption_and_bad_input_is_refused_up_front() {
        assert!(EncryptArgs::default().encryption().unwrap().is_none());
        assert!(IdentityArgs::default().identities().unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let ids = Identities::generate();
        let recipient = ids.recipients()[0].to_string();
        let recipients = dir.path().join("recipients.txt");
        std::fs::write(&recipients, format!("# ops\n{recipient}\n")).unwrap();
        let other = Identities::generate().recipients()[0].to_string();
        let args = EncryptArgs {
            recipients: vec![other],
            recipient_files: vec![recipients.clone()],
        };
        assert_eq!(args.encryption().unwrap().unwrap().recipients().len(), 2);

        let bad = EncryptArgs {
            recipients: vec!["age1nope".into()],
            ..EncryptArgs::default()
        };
        let err = format!("{:#}", bad.encryption().unwrap_err());
        assert!(
            err.contains("--encrypt-to") && err.contains("age1nope"),
            "{err}"
        );
        let missing = EncryptArgs {
            recipient_files: vec![dir.path().join("absent")],
            ..EncryptArgs::default()
        };
        let err = format!("{:#}", missing.encryption().unwrap_err());
        assert_eq!(err.matches("No such file").count(), 1, "{err}");
        std::fs::write(&recipients, "# nobody\n").unwrap();
        let empty = EncryptArgs {
            recipient_files: vec![recipients],
            ..EncryptArgs::default()
        };
        assert!(format!("{:#}", empty.encryption().unwrap_err()).contains("no recipient"));

        let key = dir.path().join("key.txt");
        std::fs::write(&key, ids.to_identity_file()).unwrap();
        let two = dir.path().join("key2.txt");
        std::fs::write(&two, Identities::generate().to_identity_file()).unwrap();
        let args = IdentityArgs {
            identity_files: vec![key.clone(), two],
        };
        assert_eq!(args.identities().unwrap().unwrap().fingerprints().len(), 2);
        std::fs::write(&key, format!("{recipient}\n")).unwrap();
        let err = format!(
            "{:#}",
            IdentityArgs {
                identity_files: vec![key]
            }
            .identities()
            .unwrap_err()
        );
        assert!(
            err.contains("--identity-file") && err.contains("line 1"),
            "{err}"
        );
    }
}
