//! `cargo xtask crds [backupfleet|velero] [--out DIR]`: our CRDs (the same stream as
//! `backup-controller crds`) or Velero's, as generated from the Rust types.
//!
//! Tests and local setups install exactly the schema the in-cluster engine reads and writes,
//! so there is no hand-maintained YAML to drift from the types.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

/// Which set of CRDs to write.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CrdSet {
    /// Our `backupfleet.dev/v1alpha1` kinds, what the controller serves.
    Backupfleet,
    /// Velero's `velero.io/v1` kinds the in-cluster engine uses.
    Velero,
}

/// Arguments of `cargo xtask crds`.
#[derive(Args, Debug)]
pub struct CrdsArgs {
    /// Which CRDs.
    #[arg(default_value = "backupfleet")]
    set: CrdSet,
    /// Write one `<crd-name>.yaml` per CRD into this directory instead of one YAML stream to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Writes the requested CRDs.
pub fn run(args: CrdsArgs) -> Result<()> {
    let crds = match args.set {
        CrdSet::Backupfleet => backup_api::crds(),
        CrdSet::Velero => backup_velero::api::crds(),
    };
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let name = crd.metadata.name.clone().unwrap_or_default();
                let path = dir.join(format!("{name}.yaml"));
                let yaml = serde_yaml_ng::to_string(crd).context("serialising CRD")?;
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", path.display());
            }
        }
        None => {
            let mut stream = String::new();
            for crd in &crds {
                stream.push_str("---\n");
                stream.push_str(&serde_yaml_ng::to_string(crd)?);
            }
            write_stdout(&stream)?;
        }
    }
    Ok(())
}

/// Writes `text` to stdout; a reader that stops early (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
