//! `cargo xtask crds velero [--out DIR]`: Velero's CRDs as generated from our Rust types.
//!
//! Tests and local setups install exactly the schema the in-cluster engine reads and writes,
//! so there is no hand-maintained YAML to drift from the types.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

/// Which set of CRDs to write.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CrdSet {
    /// Velero's `velero.io/v1` kinds the in-cluster engine uses.
    Velero,
}

/// Arguments of `cargo xtask crds`.
#[derive(Args, Debug)]
pub struct CrdsArgs {
    /// Which CRDs.
    set: CrdSet,
    /// Write one `<crd-name>.yaml` per CRD into this directory instead of one YAML stream to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Writes the requested CRDs.
pub fn run(args: CrdsArgs) -> Result<()> {
    let crds = match args.set {
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
            for crd in &crds {
                print!("---\n{}", serde_yaml_ng::to_string(crd)?);
            }
        }
    }
    Ok(())
}
