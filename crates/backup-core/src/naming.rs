//! Names of the objects we create: they must be valid Kubernetes names and sort by time.
//!
//! Velero names scheduled backups `<schedule>-<YYYYMMDDhhmmss>`, and KKP names etcd backups
//! `<config>-<timestamp>`. We follow that, but a long schedule name could push the result past
//! the 63-character DNS-1123 label limit that labels and some resources impose, so long bases are
//! shortened with a hash that keeps names unique per schedule and still sortable by time.

use sha2::{Digest, Sha256};

/// Maximum length of a DNS-1123 label (namespace names, label values, Velero backup names used
/// as label values).
pub const DNS1123_LABEL_MAX: usize = 63;
/// Maximum length of a DNS-1123 subdomain (most object names).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// Why a name is not a valid Kubernetes name. Variants name the value and what's accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty name.
    #[error("name must not be empty: use lowercase letters, digits and '-'")]
    Empty,
    /// Longer than the limit.
    #[error("name {name:?} is {len} characters long, the limit is {max}")]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside `[a-z0-9-]` (plus `.` for subdomains).
    #[error(
        "name {name:?} contains {ch:?}: only lowercase letters a-z, digits 0-9 and '-'{dot} are allowed"
    )]
    InvalidChar {
        /// The rejected name.
        name: String,
        /// The first offending character.
        ch: char,
        /// ` and '.'` when dots were allowed, empty otherwise (for the message).
        dot: &'static str,
    },
    /// Starts or ends with something other than a letter or digit.
    #[error("name {name:?} must start and end with a lowercase letter or digit")]
    BadEdge {
        /// The rejected name.
        name: String,
    },
}

/// Validates a DNS-1123 label: 1–63 chars of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn validate_dns1123_label(name: &str) -> Result<(), NameError> {
    check_name(name, DNS1123_LABEL_MAX, false)
}

/// Validates a DNS-1123 subdomain: up to 253 chars, dot-separated labels (each non-empty and
/// alphanumeric at both ends), as Kubernetes requires for most object names.
pub fn validate_dns1123_subdomain(name: &str) -> Result<(), NameError> {
    check_name(name, DNS1123_SUBDOMAIN_MAX, true)?;
    for part in name.split('.') {
        if part.is_empty() || !edges_ok(part) {
            return Err(NameError::BadEdge {
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

fn edges_ok(s: &str) -> bool {
    let ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok(s.chars().next()) && ok(s.chars().last())
}

fn check_name(name: &str, max: usize, allow_dot: bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            name: name.to_string(),
            len: name.len(),
            max,
        });
    }
    if let Some(ch) = name.chars().find(|&c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.'))
    }) {
        return Err(NameError::InvalidChar {
            name: name.to_string(),
            ch,
            dot: if allow_dot { " and '.'" } else { "" },
        });
    }
    if !edges_ok(name) {
        return Err(NameError::BadEdge {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Turns arbitrary text into something DNS-1123-label shaped: lowercase, every run of invalid
/// characters becomes one `-`, no leading/trailing `-`. Returns an empty string when nothing
/// usable is left; it does not truncate (callers decide how to shorten).
pub fn sanitize(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut pending_dash = false;
    for c in input.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out
}

/// Number of hex characters of the hash used when a name must be shortened.
const HASH_LEN: usize = 8;
/// `YYYYMMDDhhmmss`.
const TIMESTAMP_LEN: usize = 14;

/// The name of a backup taken by schedule `schedule_name` at `at`: `<name>-<YYYYMMDDhhmmss>` in UTC.
///
/// The result is always a valid DNS-1123 label. If it would exceed 63 characters the base is
/// truncated and `-<8 hex of sha256(schedule_name)>` is inserted before the timestamp: hashing
/// the *full schedule name* (not the timestamp) keeps all backups of one schedule under one
/// prefix, so they still sort chronologically, while two long names sharing a prefix stay
/// distinct. An empty or unusable base becomes `backup`.
pub fn scheduled_backup_name(schedule_name: &str, at: jiff::Timestamp) -> String {
    let stamp = at.strftime("%Y%m%d%H%M%S").to_string();
    let mut base = sanitize(schedule_name);
    if base.is_empty() {
        base = "backup".to_string();
    }
    let full = format!("{base}-{stamp}");
    if full.len() <= DNS1123_LABEL_MAX && stamp.len() == TIMESTAMP_LEN {
        return full;
    }
    let digest = Sha256::digest(schedule_name.as_bytes());
    let hash = &hex::encode(digest)[..HASH_LEN];
    let room = DNS1123_LABEL_MAX.saturating_sub(stamp.len() + HASH_LEN + 2);
    let truncated = base[..room.min(base.len())].trim_end_matches('-');
    format!("{truncated}-{hash}-{stamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn short_names_follow_velero() {
        assert_eq!(
            scheduled_backup_name("daily", ts("2024-03-05T07:08:09Z")),
            "daily-20240305070809"
        );
    }

    #[test]
    fn uses_utc() {
        let at: jiff::Timestamp = "2024-03-05T07:08:09+02:00".parse().unwrap();
        assert_eq!(scheduled_backup_name("x", at), "x-20240305050809");
    }

    #[test]
    fn sanitizes_base() {
        assert_eq!(
            scheduled_backup_name("My_Schedule!", ts("2024-01-01T00:00:00Z")),
            "my-schedule-20240101000000"
        );
        assert_eq!(
            scheduled_backup_name("---", ts("2024-01-01T00:00:00Z")),
            "backup-20240101000000"
        );
    }

    #[test]
    fn long_names_truncated_hashed_and_sortable() {
        let long = "a".repeat(80);
        let n1 = scheduled_backup_name(&long, ts("2024-01-01T00:00:00Z"));
        let n2 = scheduled_backup_name(&long, ts("2024-01-02T00:00:00Z"));
        assert_eq!(n1.len(), 63);
        validate_dns1123_label(&n1).unwrap();
        assert!(n1.ends_with("-20240101000000"));
        assert!(n1 < n2);
        assert_eq!(n1[..48], n2[..48]);
        let other = format!("{}b", "a".repeat(79));
        let n3 = scheduled_backup_name(&other, ts("2024-01-01T00:00:00Z"));
        assert_ne!(n1, n3);
    }

    #[test]
    fn truncation_never_leaves_double_dash_edge() {
        let name = format!("{}-{}", "a".repeat(38), "b".repeat(40));
        let n = scheduled_backup_name(&name, ts("2024-01-01T00:00:00Z"));
        validate_dns1123_label(&n).unwrap();
        assert!(!n.contains("--"), "{n}");
    }

    #[test]
    fn label_validation() {
        validate_dns1123_label("abc-1").unwrap();
        assert_eq!(validate_dns1123_label(""), Err(NameError::Empty));
        let e = validate_dns1123_label("Abc").unwrap_err();
        assert!(matches!(e, NameError::InvalidChar { ch: 'A', .. }));
        assert!(e.to_string().contains("\"Abc\""));
        assert!(matches!(
            validate_dns1123_label("-abc"),
            Err(NameError::BadEdge { .. })
        ));
        assert!(matches!(
            validate_dns1123_label(&"a".repeat(64)),
            Err(NameError::TooLong {
                len: 64,
                max: 63,
                ..
            })
        ));
        assert!(matches!(
            validate_dns1123_label("a.b"),
            Err(NameError::InvalidChar { ch: '.', .. })
        ));
    }

    #[test]
    fn subdomain_validation() {
        validate_dns1123_subdomain("a.b-c.d").unwrap();
        assert!(matches!(
            validate_dns1123_subdomain("a..b"),
            Err(NameError::BadEdge { .. })
        ));
        assert!(matches!(
            validate_dns1123_subdomain("a.-b"),
            Err(NameError::BadEdge { .. })
        ));
        assert!(validate_dns1123_subdomain(&"a".repeat(254)).is_err());
        validate_dns1123_subdomain(&"a".repeat(253)).unwrap();
    }

    #[test]
    fn sanitize_rules() {
        assert_eq!(sanitize("Hello World__x"), "hello-world-x");
        assert_eq!(sanitize("--a--"), "a");
        assert_eq!(sanitize("ÄÖ"), "");
    }

    proptest::proptest! {
        #[test]
        fn scheduled_names_always_valid(name in ".{0,100}", secs in 0i64..4_000_000_000) {
            let at = jiff::Timestamp::from_second(secs).unwrap();
            let n = scheduled_backup_name(&name, at);
            proptest::prop_assert!(validate_dns1123_label(&n).is_ok(), "{}", n);
        }
    }
}
