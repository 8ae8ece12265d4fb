//! Diagnostics on stderr: warnings the libraries log (a backup skipped while resolving a
//! schedule, a partial upload that could not be removed) are shown by default; `-v` adds what
//! the commands are doing and `-vv` the details. `RUST_LOG` (tracing's filter syntax) overrides
//! both, e.g. `RUST_LOG=backup_velero=debug`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter `RUST_LOG` asks for, else the one for `verbose` repetitions of `-v`; a
/// `RUST_LOG` that is no filter is an error naming it, never silently replaced.
fn filter(rust_log: Option<&str>, verbose: u8) -> Result<EnvFilter, String> {
    if let Some(text) = rust_log {
        return EnvFilter::try_new(text).map_err(|e| {
            format!(
                "RUST_LOG={text:?} is not a tracing filter ({e}); e.g. RUST_LOG=backup_velero=debug, \
                 or unset it and use -v/-vv"
            )
        });
    }
    let ours = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // Our crates at the chosen level, everything else (HTTP, TLS) only from -vv, at info.
    let others = if verbose >= 2 { "info" } else { "warn" };
    Ok(EnvFilter::new(format!(
        "{others},backupctl={ours},backup_core={ours},backup_storage={ours},backup_etcd={ours},\
         backup_kube={ours},backup_velero={ours}"
    )))
}

/// Installs the stderr logger; call once, first thing in `main`.
pub fn init(verbose: u8) -> Result<(), String> {
    let rust_log = match std::env::var("RUST_LOG") {
        Ok(text) => Some(text),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err("RUST_LOG is not UTF-8".into()),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(rust_log.as_deref(), verbose)?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verbosity_parses_and_raises_our_level() {
        let levels: Vec<String> = (0..3)
            .map(|v| filter(None, v).unwrap().to_string())
            .collect();
        assert!(levels[0].contains("backup_velero=warn"), "{}", levels[0]);
        assert!(levels[1].contains("backup_velero=info"), "{}", levels[1]);
        assert!(levels[2].contains("backup_velero=debug"), "{}", levels[2]);
    }

    #[test]
    fn rust_log_wins_and_a_bad_one_is_named() {
        let chosen = filter(Some("backup_etcd=trace"), 0).unwrap().to_string();
        assert_eq!(chosen, "backup_etcd=trace");
        let e = filter(Some("backup_etcd=chatty"), 2).unwrap_err();
        assert!(e.contains("RUST_LOG=\"backup_etcd=chatty\""), "{e}");
    }
}
