//! Logs: one line per event on stderr, `info` for our crates by default; `RUST_LOG`
//! (tracing's filter syntax) overrides, e.g. `RUST_LOG=backup_controller=debug,kube=debug`.
//! Secret contents never reach a log line: errors that carry them are never built.

use tracing_subscriber::EnvFilter;

/// The default filter: our crates at `info`, everything else at `warn`.
pub const DEFAULT_FILTER: &str = "warn,backup_controller=info,backup_core=info,backup_storage=info,\
     backup_kube=info,backup_etcd=info,backup_velero=info";

/// The filter `RUST_LOG` asks for (the default when it is unset); a value that is no filter is
/// an error naming it, never silently the default.
fn filter(rust_log: Option<&str>) -> Result<EnvFilter, String> {
    match rust_log {
        None => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(text) => EnvFilter::try_new(text).map_err(|e| {
            format!(
                "RUST_LOG={text:?} is not a tracing filter ({e}); e.g. \
                 RUST_LOG=backup_controller=debug, or unset it for {DEFAULT_FILTER}"
            )
        }),
    }
}

/// Installs the logger; call once, first thing in `main`.
pub fn init() -> Result<(), String> {
    let rust_log = match std::env::var("RUST_LOG") {
        Ok(text) => Some(text),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err("RUST_LOG is not UTF-8".into()),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(rust_log.as_deref())?)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn a_rust_log_that_is_no_filter_is_named_not_replaced() {
        assert!(
            filter(None)
                .unwrap()
                .to_string()
                .contains("backup_kube=info")
        );
        assert!(filter(Some("backup_controller=debug")).is_ok());
        let e = filter(Some("backup_controller=loud")).unwrap_err();
        assert!(e.contains("RUST_LOG=\"backup_controller=loud\""), "{e}");
    }
}
