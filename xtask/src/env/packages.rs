//! Debian packages the local control plane needs, and the `deb-src` entry that lets us fetch
//! Kubernetes' source package. Installs what is missing with `apt-get` when we are root, and
//! otherwise says exactly what to run.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Packages needed to run (etcd, openssl, curl for health probes) and to build (Go toolchain, make, rsync, dpkg-source, reflect2
/// fix) the control plane, plus `protoc` for the etcd client crate.
pub const PACKAGES: &[&str] = &[
    "etcd-server",
    "etcd-client",
    "golang-go",
    "rsync",
    "make",
    "protobuf-compiler",
    "golang-github-modern-go-reflect2-dev",
    "dpkg-dev",
    "openssl",
    "curl",
];

/// The deb822 file we add (never editing the machine's own sources) for `apt-get source`.
const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/backup-fleet-deb-src.sources";

const DEB_SRC_CONTENT: &str = "\
# Added by `cargo xtask env up`: Debian source packages, for `apt-get source kubernetes`.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// Whether the current process runs as root (apt-get needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `pkg` is installed, per dpkg's database.
fn is_installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query (is this a Debian machine?)")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

/// The subset of `packages` that is not installed.
pub fn missing_packages(packages: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for pkg in packages {
        if !is_installed(pkg)? {
            missing.push(*pkg);
        }
    }
    Ok(missing)
}

/// Installs every missing package of the control plane's list ([`PACKAGES`]).
pub fn ensure_installed() -> Result<()> {
    ensure_packages(PACKAGES)
}

/// Installs every missing package of `packages` with `apt-get install -y`; without root, fails
/// with the exact command to run.
pub fn ensure_packages(packages: &[&'static str]) -> Result<()> {
    let missing = missing_packages(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}\nrun as root: apt-get update && apt-get install -y {list}"
        );
    }
    println!("installing Debian packages: {list}");
    run_apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    run_apt(&args)
}

/// Makes sure apt knows bookworm's source packages: adds our own deb822 `deb-src` file when no
/// source entry exists, and refreshes just that source's index.
pub fn ensure_deb_src() -> Result<()> {
    if has_deb_src()? {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "apt has no deb-src entry for bookworm (needed for `apt-get source kubernetes`)\n\
             run as root: printf '%s' '{DEB_SRC_CONTENT}' > {DEB_SRC_FILE} && apt-get update"
        );
    }
    println!("adding a deb-src entry for bookworm: {DEB_SRC_FILE}");
    std::fs::write(DEB_SRC_FILE, DEB_SRC_CONTENT)
        .with_context(|| format!("writing {DEB_SRC_FILE}"))?;
    refresh_deb_src()
}

/// Refreshes the package index of our `deb-src` file only (fast: one download).
pub fn refresh_deb_src() -> Result<()> {
    if !Path::new(DEB_SRC_FILE).exists() {
        return run_apt(&["update"]);
    }
    run_apt(&[
        "update",
        "-o",
        &format!("Dir::Etc::sourcelist={DEB_SRC_FILE}"),
        "-o",
        "Dir::Etc::sourceparts=-",
        "-o",
        "APT::Get::List-Cleanup=0",
    ])
}

/// Whether any apt source file already enables `deb-src` for bookworm.
fn has_deb_src() -> Result<bool> {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    for file in files {
        let name = file.to_string_lossy();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let active: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        // One-line format: `deb-src URI bookworm main`.
        if active
            .iter()
            .any(|l| l.starts_with("deb-src ") && l.contains(" bookworm "))
        {
            return Ok(true);
        }
        // deb822 format: a stanza with `Types: ... deb-src` and `Suites: ... bookworm`.
        for stanza in active.split(|l| l.is_empty()) {
            let field = |name: &str| {
                stanza
                    .iter()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            if field("Types:").iter().any(|t| t == "deb-src")
                && field("Suites:").iter().any(|s| s == "bookworm")
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Runs `apt-get ARGS` non-interactively, failing with its output on error.
fn run_apt(args: &[&str]) -> Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .context("running apt-get")?;
    if !out.status.success() {
        bail!(
            "apt-get {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
