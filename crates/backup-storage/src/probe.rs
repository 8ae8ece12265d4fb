//! Availability probe: can this repository actually store backups right now?
//!
//! Listing alone proves little (a read-only key lists fine), so after a list the probe does what
//! a backup does: write a small sentinel, read it back, compare, delete. Failures are classified into
//! reasons a user can act on, keeping the underlying message for the details.

use std::fmt;

use bytes::Bytes;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::remote::{chain_text, summary};
use crate::repository::Repository;

/// The outcome of [`Repository::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Write, read back and delete all worked.
    Available,
    /// The bucket/container does not exist.
    BucketMissing {
        /// Underlying error.
        message: String,
    },
    /// Credentials are wrong, or forbidden from this bucket.
    AccessDenied {
        /// Underlying error.
        message: String,
    },
    /// The endpoint could not be reached (connection refused, DNS, timeout).
    Unreachable {
        /// Underlying error.
        message: String,
    },
    /// The endpoint (or an address it resolved or redirected to) is one projects may not
    /// reach: link-local, a metadata service, or the platform's own networks.
    AddressNotAllowed {
        /// Which address, and why.
        message: String,
    },
    /// Reads work but writes are refused.
    ReadOnly {
        /// Underlying error.
        message: String,
    },
    /// The object read back differs from what was written.
    Corrupt {
        /// What differed.
        message: String,
    },
    /// Anything else.
    Failed {
        /// Underlying error.
        message: String,
    },
}

impl Availability {
    /// True only for [`Availability::Available`].
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }

    /// A CamelCase reason, stable for scripts and for status conditions (`BucketMissing`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Availability::Available => "Available",
            Availability::BucketMissing { .. } => "BucketMissing",
            Availability::AccessDenied { .. } => "AccessDenied",
            Availability::Unreachable { .. } => "Unreachable",
            Availability::AddressNotAllowed { .. } => "AddressNotAllowed",
            Availability::ReadOnly { .. } => "ReadOnly",
            Availability::Corrupt { .. } => "Corrupt",
            Availability::Failed { .. } => "Failed",
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Availability::Available => f.write_str("available"),
            Availability::BucketMissing { message } => write!(
                f,
                "bucket does not exist: create it or fix the bucket name in the location URL ({message})"
            ),
            Availability::AccessDenied { message } => write!(
                f,
                "access denied: check the access key, secret and the bucket policy ({message})"
            ),
            Availability::Unreachable { message } => write!(
                f,
                "storage endpoint unreachable: check the endpoint URL (s3Url), DNS and network ({message})"
            ),
            Availability::AddressNotAllowed { message } => {
                write!(f, "storage endpoint not allowed: {message}")
            }
            Availability::ReadOnly { message } => write!(
                f,
                "storage is read-only for these credentials: grant write and delete permission ({message})"
            ),
            Availability::Corrupt { message } => write!(
                f,
                "storage returned different data than was written: check the storage service ({message})"
            ),
            Availability::Failed { message } => write!(f, "storage probe failed: {message}"),
        }
    }
}

/// Reason classes for an object_store error; `ReadOnly` and `Corrupt` are decided by the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    BucketMissing,
    AccessDenied,
    Unreachable,
    AddressNotAllowed,
    Other,
}

/// What a status message says of an error: the store's answer summarised (never its body,
/// see [`crate::remote`]), except that a failure of the instance-metadata fallback (its retries
/// run to pages) says what it means.
fn message_of(err: &object_store::Error) -> String {
    if backup_net::denied_in(err).is_none() && crate::error::is_metadata_fallback(&chain_text(err))
    {
        "no credentials were given (the cloud's instance metadata, tried last, did not answer): \
         set access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            .to_string()
    } else {
        summary(err)
    }
}

fn classify(err: &object_store::Error) -> Class {
    if backup_net::denied_in(err).is_some() {
        return Class::AddressNotAllowed;
    }
    if crate::error::is_metadata_fallback(&chain_text(err)) {
        return Class::AccessDenied;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<HttpError>()
            && matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout)
        {
            return Class::Unreachable;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::PermissionDenied | K::ReadOnlyFilesystem => return Class::AccessDenied,
                K::ConnectionRefused | K::TimedOut | K::HostUnreachable | K::NetworkUnreachable => {
                    return Class::Unreachable;
                }
                _ => {}
            }
        }
        source = s.source();
    }
    let text = chain_text(err);
    let has = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
    if has(&[
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
    ]) {
        return Class::BucketMissing;
    }
    if has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AuthorizationFailure",
        "AuthenticationFailed",
        "InvalidToken",
        "ExpiredToken",
        "NotSignedUp",
        "InvalidClientTokenId",
        // Listing errors are not mapped to typed variants by object_store; the status is in text.
        "403 Forbidden",
        "401 Unauthorized",
    ]) {
        return Class::AccessDenied;
    }
    match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Class::AccessDenied,
        _ => Class::Other,
    }
}

fn to_availability(class: Class, message: String) -> Availability {
    match class {
        Class::BucketMissing => Availability::BucketMissing { message },
        Class::AccessDenied => Availability::AccessDenied { message },
        Class::Unreachable => Availability::Unreachable { message },
        Class::AddressNotAllowed => Availability::AddressNotAllowed { message },
        Class::Other => Availability::Failed { message },
    }
}

impl Repository {
    /// Writes, reads back, compares and deletes a small sentinel object under this scope (a
    /// read-only repository is only listed). Never fails: every problem becomes an
    /// [`Availability`] reason.
    pub async fn probe(&self) -> Availability {
        let store = self.store();
        let nonce = format!(
            "{:x}-{:x}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        );
        let path = Path::from(format!(".backup-probe-{nonce}"));
        let content = Bytes::from(format!("backup-storage availability probe {nonce}\n"));

        // List first: it proves the bucket exists and we may read (some servers create a
        // missing bucket on write, which would hide the real problem).
        if let Err(e) = store.list_with_delimiter(None).await {
            return to_availability(classify(&e), message_of(&e));
        }
        // A read-only repository is never written to, not even by its probe.
        if !self.is_writable() {
            return Availability::Available;
        }
        if let Err(e) = store.put(&path, PutPayload::from(content.clone())).await {
            return match classify(&e) {
                // Listing worked, so the credentials are valid but may not write.
                Class::AccessDenied => Availability::ReadOnly {
                    message: message_of(&e),
                },
                class => to_availability(class, message_of(&e)),
            };
        }

        let read = match store.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let outcome = match read {
            Ok(bytes) if bytes == content => Availability::Available,
            Ok(bytes) => Availability::Corrupt {
                message: format!(
                    "wrote {} bytes to `{path}` but read back {} different bytes",
                    content.len(),
                    bytes.len()
                ),
            },
            Err(e) => to_availability(classify(&e), message_of(&e)),
        };
        match store.delete(&path).await {
            Ok(()) => outcome,
            Err(e) if outcome.is_available() => match classify(&e) {
                Class::AccessDenied => Availability::ReadOnly {
                    message: format!("writes work but deletes are refused: {}", message_of(&e)),
                },
                class => to_availability(class, message_of(&e)),
            },
            Err(_) => outcome,
        }
    }
}
