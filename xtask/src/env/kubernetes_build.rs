//! Builds kube-apiserver and kube-controller-manager 1.20.2 from Debian's `kubernetes` source
//! package, once per machine, and caches the two binaries under
//! `$XDG_CACHE_HOME/backup-fleet/kubernetes-1.20.2/bin/` (or `~/.cache/...`).
//!
//! The build happens in `kubernetes-1.20.2.build/` next to the cache; the finished binaries are
//! staged in `kubernetes-1.20.2.tmp/` and renamed into place last, so a half-finished build is
//! never mistaken for a cache hit and is simply redone. A file lock keeps two builds apart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::packages;
use super::process::tail_lines;
use backup_localenv::lock::FileLock;

/// The upstream Kubernetes version in Debian bookworm's `kubernetes` source package.
pub const VERSION: &str = "1.20.2";

/// The two binaries the control plane runs.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    /// Path to `kube-apiserver`.
    pub apiserver: PathBuf,
    /// Path to `kube-controller-manager`.
    pub controller_manager: PathBuf,
}

const APISERVER: &str = "kube-apiserver";
const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// The machine's cache of what xtask builds once (see [`super::cache_dir`]).
fn cache_root() -> Result<PathBuf> {
    super::cache_dir()
}

/// The cached binaries, if a complete build is in the cache.
pub fn cached() -> Result<Option<KubeBinaries>> {
    let bin = cache_root()?
        .join(format!("kubernetes-{VERSION}"))
        .join("bin");
    let binaries = KubeBinaries {
        apiserver: bin.join(APISERVER),
        controller_manager: bin.join(CONTROLLER_MANAGER),
    };
    Ok((binaries.apiserver.is_file() && binaries.controller_manager.is_file()).then_some(binaries))
}

/// Returns the cached binaries, building them first (5–7 minutes on 2 cores) when absent.
pub fn ensure_built() -> Result<KubeBinaries> {
    if let Some(binaries) = cached()? {
        return Ok(binaries);
    }
    let root = cache_root()?;
    let _lock = FileLock::acquire(
        &root.join(format!("kubernetes-{VERSION}.lock")),
        "another process is building Kubernetes; waiting for it…",
    )?;
    // The other process may have finished the build while we waited.
    if let Some(binaries) = cached()? {
        return Ok(binaries);
    }
    packages::ensure_packages(packages::CONTROL_PLANE)?;
    packages::ensure_deb_src()?;
    build(&root)?;
    cached()?.context("the Kubernetes build finished but its binaries are not in the cache")
}

/// Fetches, patches and builds the source tree, then installs the binaries atomically.
fn build(root: &Path) -> Result<()> {
    let work = root.join(format!("kubernetes-{VERSION}.build"));
    let staging = root.join(format!("kubernetes-{VERSION}.tmp"));
    let log = root.join(format!("kubernetes-{VERSION}.build.log"));
    for leftover in [&work, &staging] {
        if leftover.exists() {
            println!("removing an unfinished build: {}", leftover.display());
            std::fs::remove_dir_all(leftover)
                .with_context(|| format!("removing {}", leftover.display()))?;
        }
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    println!(
        "fetching Debian's kubernetes source package into {}",
        work.display()
    );
    fetch_source(&work, &log)?;
    let tree = find_tree(&work)?;
    replace_reflect2(&tree)?;
    let gopath_link = tree.join(".go/src/k8s.io/kubernetes");
    std::fs::create_dir_all(tree.join(".go/src/k8s.io"))?;
    if gopath_link.symlink_metadata().is_err() {
        std::os::unix::fs::symlink("../../..", &gopath_link)
            .with_context(|| format!("linking {}", gopath_link.display()))?;
    }
    let version_file = work.join("version.env");
    std::fs::write(
        &version_file,
        format!(
            "KUBE_GIT_VERSION='v{VERSION}'\nKUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\n\
             KUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_COMMIT=''\n"
        ),
    )?;

    println!(
        "building kube-apiserver and kube-controller-manager {VERSION} \
         (5–7 min, once per machine); log: {}",
        log.display()
    );
    run_make(&tree, &work, &version_file, &log)?;

    let out = tree.join("_output/bin");
    std::fs::create_dir_all(staging.join("bin"))?;
    for name in [APISERVER, CONTROLLER_MANAGER] {
        std::fs::copy(out.join(name), staging.join("bin").join(name))
            .with_context(|| format!("copying {} from {}", name, out.display()))?;
    }
    let final_dir = root.join(format!("kubernetes-{VERSION}"));
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&staging, &final_dir)
        .with_context(|| format!("installing {}", final_dir.display()))?;
    std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    println!("Kubernetes {VERSION} cached in {}", final_dir.display());
    Ok(())
}

/// `apt-get source kubernetes` in `work`, refreshing the source index once if apt has none.
fn fetch_source(work: &Path, log: &Path) -> Result<()> {
    let attempt = || -> Result<(bool, String)> {
        let out = Command::new("apt-get")
            .args(["source", "kubernetes"])
            .current_dir(work)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .context("running apt-get source kubernetes")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(log, &text)?;
        Ok((out.status.success(), text))
    };
    let (mut ok, mut text) = attempt()?;
    if !ok && packages::is_root() {
        // Usually "You must put some 'deb-src' URIs": the source index was never downloaded.
        packages::refresh_deb_src()?;
        (ok, text) = attempt()?;
    }
    if !ok {
        bail!("apt-get source kubernetes failed:\n{text}");
    }
    Ok(())
}

/// The unpacked source tree: `work/kubernetes-<debian upstream version>` (e.g.
/// `kubernetes-1.20.5+really1.20.2`), the one directory with `hack/` whose name ends in VERSION.
fn find_tree(work: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(work)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("kubernetes-")
            && name.ends_with(VERSION)
            && entry.path().join("hack").is_dir()
        {
            return Ok(entry.path());
        }
        found.push(name);
    }
    bail!(
        "apt-get source kubernetes did not unpack a kubernetes-*{VERSION} tree in {} \
         (found: {}); is bookworm's source package still Kubernetes {VERSION}?",
        work.display(),
        found.join(", ")
    )
}

/// Replaces the vendored reflect2 1.0.1 (which crashes under Go ≥ 1.18) with Debian's 1.0.2.
fn replace_reflect2(tree: &Path) -> Result<()> {
    let out = Command::new("dpkg")
        .args(["-L", "golang-github-modern-go-reflect2-dev"])
        .output()
        .context("running dpkg -L golang-github-modern-go-reflect2-dev")?;
    if !out.status.success() {
        bail!("golang-github-modern-go-reflect2-dev is not installed");
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    let source = listing
        .lines()
        .map(Path::new)
        .find(|p| p.ends_with("github.com/modern-go/reflect2") && p.is_dir())
        .context("dpkg -L golang-github-modern-go-reflect2-dev lists no reflect2 source dir")?
        .to_path_buf();
    let vendored = tree.join("vendor/github.com/modern-go/reflect2");
    if vendored.exists() {
        std::fs::remove_dir_all(&vendored)?;
    }
    copy_tree(&source, &vendored, &["go.mod", "go.sum"])
        .with_context(|| format!("copying {} into the vendor tree", source.display()))
}

/// Recursively copies `from` into `to` (following symlinks), skipping the names in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name), skip)?;
        } else {
            std::fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}

/// Runs the upstream `make` for the two commands, logging to `log` and printing progress.
fn run_make(tree: &Path, work: &Path, version_file: &Path, log: &Path) -> Result<()> {
    let log_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)?;
    let path = format!(
        "/usr/lib/go/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("make")
        .arg(format!("WHAT=cmd/{APISERVER} cmd/{CONTROLLER_MANAGER}"))
        .current_dir(tree)
        .env("GOPATH", tree.join(".go"))
        .env("GOCACHE", work.join("gocache"))
        .env("CGO_ENABLED", "0")
        .env("PATH", path)
        .env("KUBE_GIT_VERSION_FILE", version_file)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting make (is `make` installed?)")?;
    let start = Instant::now();
    let mut last_report = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_secs(1));
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let last = tail_lines(log, 1).unwrap_or_default();
            let last: String = last.trim().chars().take(100).collect();
            println!(
                "  … still building ({} s): {last}",
                start.elapsed().as_secs()
            );
        }
    };
    if !status.success() {
        bail!(
            "building Kubernetes failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail_lines(log, 30).unwrap_or_default()
        );
    }
    println!("built in {} s", start.elapsed().as_secs());
    Ok(())
}
