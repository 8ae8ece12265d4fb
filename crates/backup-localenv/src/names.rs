//! Unique names for the objects a test or a benchmark creates on the shared clusters.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A DNS-1123 name `<prefix>-<test>-<random hex>` of at most 63 characters, unique per call.
pub fn unique_name(prefix: &str, test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let random = format!("{:08x}", hasher.finish() as u32);
    let clean: String = test
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let room = 63 - prefix.len() - random.len() - 2;
    let clean: String = clean.trim_matches('-').chars().take(room).collect();
    let clean = clean.trim_end_matches('-');
    format!("{prefix}-{clean}-{random}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dns_labels() {
        let long = "A_very long test name ".repeat(10);
        let (a, b) = (unique_name("t", &long), unique_name("t", &long));
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.len() <= 63, "{name}");
            assert!(name.starts_with("t-a-very-long-test-name-"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.contains("--"), "{name}");
        }
    }
}
