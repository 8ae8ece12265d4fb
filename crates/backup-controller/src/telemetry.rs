//! Logs: one line per event on stderr, `info` for our crates by default; `RUST_LOG`
//! (tracing's filter syntax) overrides, e.g. `RUST_LOG=backup_controller=debug,kube=debug`.
//! Secret contents never reach a log line: errors that carry them are never built.

use tracing_subscriber::EnvFilter;

/// The default filter: our crates at `info`, everything else at `warn`.
pub const DEFAULT_FILTER: &str =
    "warn,backup_controller=info,backup_core=info,backup_storage=info,backup_velero=info";

/// Installs the logger; call once, first thing in `main`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
