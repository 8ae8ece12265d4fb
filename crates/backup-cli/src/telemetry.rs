//! Diagnostics on stderr: warnings the libraries log (a backup skipped while resolving a
//! schedule, a partial upload that could not be removed) are shown by default; `-v` adds what
//! the commands are doing and `-vv` the details. `RUST_LOG` (tracing's filter syntax) overrides
//! both, e.g. `RUST_LOG=backup_velero=debug`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter for `verbose` repetitions of `-v`, unless `RUST_LOG` is set.
fn filter(verbose: u8) -> EnvFilter {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return filter;
    }
    let ours = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // Our crates at the chosen level, everything else (HTTP, TLS) only from -vv, at info.
    let others = if verbose >= 2 { "info" } else { "warn" };
    EnvFilter::new(format!(
        "{others},backupctl={ours},backup_core={ours},backup_storage={ours},backup_etcd={ours},backup_velero={ours}"
    ))
}

/// Installs the stderr logger; call once, first thing in `main`.
pub fn init(verbose: u8) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(verbose))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verbosity_parses_and_raises_our_level() {
        // SAFETY-free: only reads the environment; RUST_LOG is not set by cargo test.
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        let levels: Vec<String> = (0..3).map(|v| filter(v).to_string()).collect();
        assert!(levels[0].contains("backup_velero=warn"), "{}", levels[0]);
        assert!(levels[1].contains("backup_velero=info"), "{}", levels[1]);
        assert!(levels[2].contains("backup_velero=debug"), "{}", levels[2]);
    }
}
