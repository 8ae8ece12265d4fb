//! The real `age` CLI (Debian's package `age`: `age`, `age-keygen`), the peer that encrypted
//! backups must interoperate with. When the binaries are missing they are installed the way
//! `cargo xtask test` installs its prerequisites (`cargo xtask env install`, from xtask's one
//! package list), once per machine, under a lock so parallel tests do not race apt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail, ensure};

/// The `age` binary.
pub const AGE: &str = "/usr/bin/age";
/// The `age-keygen` binary.
pub const AGE_KEYGEN: &str = "/usr/bin/age-keygen";

/// Makes sure both binaries exist, installing Debian's `age` if needed.
pub fn ensure_installed() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| install().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(|_| ())
        .map_err(|e| anyhow!("the age CLI is not available: {e}"))
}

fn present() -> bool {
    Path::new(AGE).is_file() && Path::new(AGE_KEYGEN).is_file()
}

fn install() -> Result<()> {
    if present() {
        return Ok(());
    }
    let dir = crate::env::env_dir();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _lock = crate::lock::FileLock::acquire(
        &dir.with_file_name(format!("{name}.packages.lock")),
        "waiting for another test installing packages",
    )?;
    if present() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "env",
            "install",
        ])
        .current_dir(crate::env::workspace_root())
        .output()
        .context("running `cargo xtask env install`")?;
    if !out.status.success() {
        bail!(
            "`cargo xtask env install` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ensure!(
        present(),
        "`cargo xtask env install` did not provide {AGE} and {AGE_KEYGEN}"
    );
    Ok(())
}

/// Runs one of the binaries to success and returns its stdout.
fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    ensure_installed()?;
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {:?} failed ({}): {}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `age-keygen -o FILE`: a new identity file; returns its recipient (`age-keygen -y FILE`).
pub fn keygen(file: &Path) -> Result<String> {
    run(AGE_KEYGEN, &["-o".as_ref(), file.as_os_str()])?;
    Ok(run(AGE_KEYGEN, &["-y".as_ref(), file.as_os_str()])?
        .trim()
        .to_string())
}

/// `age -d -i IDENTITY -o OUTPUT INPUT`.
pub fn decrypt(identity: &Path, input: &Path, output: &Path) -> Result<()> {
    run(
        AGE,
        &[
            "-d".as_ref(),
            "-i".as_ref(),
            identity.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            input.as_os_str(),
        ],
    )
    .map(drop)
}

/// Decrypts `input` into a new file beside it (`<input>.decrypted`) and returns its path.
pub fn decrypt_beside(identity: &Path, input: &Path) -> Result<PathBuf> {
    let mut name = input.as_os_str().to_owned();
    name.push(".decrypted");
    let output = PathBuf::from(name);
    decrypt(identity, input, &output)?;
    Ok(output)
}
