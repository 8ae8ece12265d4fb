//! Sizes as people read them: `512 B`, `1.5 KiB`, `3.2 GiB`.
//!
//! Tables and the dashboard show this; JSON and YAML keep the exact byte count, so scripts never
//! parse a rounded figure.

/// Binary units, as `ls -h` and Kubernetes quantities (`Ki`, `Mi`) count.
const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `bytes` in the largest binary unit that keeps the figure at least 1, with one decimal;
/// below 1 KiB the exact count.
pub fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 would print as "1024.0 KiB"; it reads better as the next unit.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_as_people_read_them() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (5 * 1024 * 1024 + 300 * 1024, "5.3 MiB"),
            (3_435_973_837, "3.2 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(human_bytes(bytes), shown, "{bytes}");
        }
    }
}
