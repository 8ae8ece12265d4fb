//! The Python venv holding `helm-python-sdk` (Helm's Go SDK in a wheel), which the chart tests
//! render and lint `charts/backup-fleet` with: no helm binary is reachable here.
//!
//! Made once per machine under `~/.cache/backup-fleet/helm-venv` with Debian's python3, and
//! checked by what it provides (Helm's shared library loads), not by pip's word.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::env::packages::{Requirement, ensure_packages};

/// The wheel, pinned: its Helm SDK is the engine the chart is proven with.
const SDK: &str = "helm-python-sdk==0.2.2";
/// Debian's python3 (the venv must not depend on a user's pyenv).
const PYTHON: &str = "/usr/bin/python3";
/// `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
pub const VENV: &[Requirement] = &[
    Requirement {
        package: "python3",
        provides: PYTHON,
    },
    Requirement {
        package: "python3-venv",
        provides: "/usr/lib/python3.11/ensurepip/__init__.py",
    },
];
/// Exits 0 when the SDK imports and its bundled Helm library is a file.
const CHECK: &str = "import os, sys, helm_python; \
    sys.exit(0 if os.path.isfile(helm_python.library_path) else 1)";

/// The venv's directory.
pub fn venv_dir() -> Result<PathBuf> {
    Ok(crate::env::cache_dir()?.join("helm-venv"))
}

/// The venv's python, with the SDK importable; makes the venv when it is missing or broken.
pub fn ensure() -> Result<PathBuf> {
    let dir = venv_dir()?;
    let python = dir.join("bin/python");
    if works(&python) {
        return Ok(python);
    }
    ensure_packages(VENV)?;
    println!("making {} with {SDK} (once per machine)", dir.display());
    run(Command::new(PYTHON)
        .args(["-m", "venv", "--clear"])
        .arg(&dir))?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", SDK]))?;
    if !works(&python) {
        bail!(
            "{SDK} is installed in {} but Helm's library does not load: remove the directory \
             and run again",
            dir.display()
        );
    }
    Ok(python)
}

/// Whether the venv is there and Helm's SDK loads in it.
pub fn is_ready() -> bool {
    venv_dir().is_ok_and(|dir| works(&dir.join("bin/python")))
}

fn works(python: &std::path::Path) -> bool {
    python.is_file()
        && Command::new(python)
            .args(["-c", CHECK])
            .status()
            .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
