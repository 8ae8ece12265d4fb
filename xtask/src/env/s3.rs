//! The S3-compatible server: `s3s-fs` on 127.0.0.1 serving `DIR/s3`, where each directory is a
//! bucket, with bucket `backups` ready and `DIR/s3.env` exporting the AWS_* variables.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::certs::random_hex;
use super::cluster::{Shared, start_with_retry};
use super::health;
use super::process::{self, Spec};
use backup_localenv::env_state::{ProcessState, S3State};

/// The crate version known to build with our toolchain (0.17 needs a newer rustc).
const S3S_FS_VERSION: &str = "0.14.1";
/// The bucket made ready at start.
pub const BUCKET: &str = "backups";
/// The region clients sign with.
pub const REGION: &str = "us-east-1";

/// Finds `s3s-fs` on PATH or in `~/.cargo/bin`, installing it with `cargo install` if absent.
pub fn ensure_binary() -> Result<PathBuf> {
    if let Some(found) = find_binary() {
        return Ok(found);
    }
    println!(
        "installing s3s-fs {S3S_FS_VERSION} with cargo install (a few minutes, once per machine)…"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "install",
            &format!("s3s-fs@{S3S_FS_VERSION}"),
            "--features",
            "binary",
            "--locked",
        ])
        .status()
        .context("running cargo install s3s-fs")?;
    if !status.success() {
        bail!("cargo install s3s-fs@{S3S_FS_VERSION} --features binary --locked failed ({status})");
    }
    find_binary().context("s3s-fs was installed but is neither on PATH nor in ~/.cargo/bin")
}

/// `s3s-fs` on PATH, else `$CARGO_HOME/bin` or `~/.cargo/bin`.
pub fn find_binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// Starts the server (reusing `previous_port` when free), creates the bucket and the env file.
pub fn start(shared: &Shared<'_>, binary: &Path, previous_port: Option<u16>) -> Result<S3State> {
    let root = shared.dir.join("s3");
    std::fs::create_dir_all(root.join(BUCKET))
        .with_context(|| format!("creating {}", root.display()))?;
    let access_key_id = format!("backup{}", random_hex(6)?);
    let secret_access_key = random_hex(20)?;
    let log = shared.dir.join("s3.log");
    let pid_file = shared.dir.join("s3.pid");
    let (_server, port) = start_with_retry(
        shared.ports,
        &[previous_port],
        |p| Spec {
            name: "s3/s3s-fs".into(),
            program: binary.to_path_buf(),
            args: vec![
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                p[0].to_string(),
                "--access-key".into(),
                access_key_id.clone(),
                "--secret-key".into(),
                secret_access_key.clone(),
                root.to_string_lossy().into_owned(),
            ],
            log: log.clone(),
            pid_file: pid_file.clone(),
        },
        Duration::from_secs(30),
        // Any HTTP answer (403 without credentials) means it serves.
        |p| health::status(&format!("http://127.0.0.1:{}/", p[0]), None, None) != 0,
    )?;
    let endpoint = format!("http://127.0.0.1:{}", port[0]);
    let location = format!("s3://{BUCKET}");
    let env_file = shared.dir.join("s3.env");
    std::fs::write(
        &env_file,
        format!(
            "# S3 of the local environment: source this file.\n\
             export AWS_ENDPOINT_URL={endpoint}\n\
             export AWS_ACCESS_KEY_ID={access_key_id}\n\
             export AWS_SECRET_ACCESS_KEY={secret_access_key}\n\
             export AWS_REGION={REGION}\n\
             export AWS_ALLOW_HTTP=true\n\
             export BACKUP_LOCATION={location}\n"
        ),
    )?;
    let pid = process::read_pid(&pid_file).context("reading the s3s-fs pid file")?;
    Ok(S3State {
        endpoint: endpoint.clone(),
        access_key_id,
        secret_access_key,
        region: REGION.into(),
        bucket: BUCKET.into(),
        location,
        root,
        env_file,
        process: ProcessState {
            name: "s3/s3s-fs".into(),
            program: binary.to_path_buf(),
            pid,
            pid_file,
            log,
            port: port[0],
            health_url: format!("{endpoint}/"),
        },
    })
}
