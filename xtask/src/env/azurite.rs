//! Azure Blob Storage: Azurite's blob service (`azurite-blob`, npm) on 127.0.0.1 serving
//! `DIR/azurite`, with container `backups` ready and `DIR/azure.env` exporting the
//! `AZURE_STORAGE_*` variables object_store reads. Installed once per machine into
//! `~/.cache/backup-fleet/azurite-<version>` (see `backup_storage::testing::azurite`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup_storage::testing::azurite::{
    self, ACCOUNT, ACCOUNT_KEY, VERSION, answers_http, create_container, install_dir, server_args,
};

use super::cluster::start_with_retry;
use super::ports::PortPicker;
use super::process::{self, Spec};
use backup_localenv::env_state::{AzureState, ProcessState};
use backup_localenv::lock::FileLock;

/// The container made ready at start.
pub const CONTAINER: &str = "backups";

/// `node` and `azurite-blob`, installing Azurite with npm into its cache directory when absent
/// (Node.js itself comes from Debian, see `packages::NODE`). The install goes to a scratch
/// directory renamed into place when complete, so a half-finished one is never taken for done.
pub fn ensure_installed() -> Result<(PathBuf, PathBuf)> {
    let node = azurite::find_node()?;
    if let Ok(found) = azurite::find_binary() {
        return Ok((node, found));
    }
    let dir = install_dir();
    let parent = dir
        .parent()
        .context("Azurite's install directory has no parent")?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _lock = FileLock::acquire(
        &parent.join(format!("{name}.lock")),
        "another process installs Azurite; waiting…",
    )?;
    if let Ok(found) = azurite::find_binary() {
        return Ok((node, found));
    }
    let scratch = parent.join(format!("{name}.partial"));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    println!(
        "installing Azurite {VERSION} with npm into {} (once per machine)…",
        dir.display()
    );
    let start = Instant::now();
    let out = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(&scratch)
        .args([
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            &format!("azurite@{VERSION}"),
        ])
        .current_dir(&scratch)
        .output()
        .context("running npm (Debian package `npm`)")?;
    if !out.status.success() {
        bail!(
            "npm install azurite@{VERSION} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !scratch.join("node_modules/.bin/azurite-blob").is_file() {
        bail!(
            "npm installed azurite@{VERSION} into {} but it has no node_modules/.bin/azurite-blob",
            scratch.display()
        );
    }
    std::fs::rename(&scratch, &dir)
        .with_context(|| format!("moving {} to {}", scratch.display(), dir.display()))?;
    println!(
        "Azurite installed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok((node, azurite::find_binary()?))
}

/// Starts Azurite (reusing `previous_port` when free), creates the container and the env file.
/// `node` runs `azurite-blob` directly so the pid file names a process we can recognise.
pub fn start(
    dir: &Path,
    ports: &Mutex<PortPicker>,
    (node, binary): &(PathBuf, PathBuf),
    previous_port: Option<u16>,
) -> Result<AzureState> {
    let root = dir.join("azurite");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let log = dir.join("azurite.log");
    let pid_file = dir.join("azurite.pid");
    let (server, port) = start_with_retry(
        ports,
        &[previous_port],
        |p| Spec {
            name: "azure/azurite".into(),
            program: node.clone(),
            args: std::iter::once(binary.display().to_string())
                .chain(server_args(p[0], &root))
                .collect(),
            log: log.clone(),
            pid_file: pid_file.clone(),
        },
        Duration::from_secs(30),
        // Any HTTP answer (403 without a signature) means it serves.
        |p| answers_http(p[0]),
    )?;
    let endpoint = azurite::endpoint(port[0]);
    if let Err(err) = create_container(&endpoint, CONTAINER) {
        let _ = process::terminate(server.pid, Duration::from_secs(5));
        return Err(err).context(format!("creating container {CONTAINER} in Azurite"));
    }
    let location = format!("az://{CONTAINER}");
    let env_file = dir.join("azure.env");
    std::fs::write(
        &env_file,
        format!(
            "# Azure Blob Storage (Azurite) of the local environment: source this file, then use\n\
             # {location}.\n\
             export AZURE_STORAGE_ACCOUNT_NAME={ACCOUNT}\n\
             export AZURE_STORAGE_ACCOUNT_KEY={ACCOUNT_KEY}\n\
             export AZURE_STORAGE_ENDPOINT={endpoint}\n\
             export AZURE_ALLOW_HTTP=true\n"
        ),
    )?;
    let pid = process::read_pid(&pid_file).context("reading Azurite's pid file")?;
    Ok(AzureState {
        endpoint: endpoint.clone(),
        container: CONTAINER.into(),
        location,
        root,
        env_file,
        process: ProcessState {
            name: "azure/azurite".into(),
            program: node.clone(),
            pid,
            pid_file,
            log,
            port: port[0],
            health_url: format!("{endpoint}?comp=list"),
        },
    })
}
