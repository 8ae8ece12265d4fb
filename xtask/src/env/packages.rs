//! Debian packages the local control plane needs, and the `deb-src` entry that lets us fetch
//! Kubernetes' source package. Installs what is missing with `apt-get` when we are root, and
//! otherwise says exactly what to run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A Debian package and a file it installs that a build or run needs. A requirement is met when
/// the file is there, not when dpkg says the package is: a package installed without its
/// recommends, or half-removed, may lack the very file we need.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    /// The Debian package that provides [`Requirement::provides`].
    pub package: &'static str,
    /// An absolute path that exists once the package is installed.
    pub provides: &'static str,
}

const fn req(package: &'static str, provides: &'static str) -> Requirement {
    Requirement { package, provides }
}

/// etcd and etcdctl, for the local control plane, the etcd tests and the etcd benchmark.
pub const ETCD: &[Requirement] = &[
    req("etcd-server", "/usr/bin/etcd"),
    req("etcd-client", "/usr/bin/etcdctl"),
];

/// Real peers the test suites interoperate with: the `age` CLI and `age-keygen` (Debian's
/// `age`), which must decrypt every encrypted artifact we store and make keys we accept; and
/// the browser the dashboard is tested in (Chromium, driven through chromedriver).
pub const TEST_TOOLS: &[Requirement] = &[
    req("age", "/usr/bin/age"),
    req("age", "/usr/bin/age-keygen"),
    req("chromium", "/usr/bin/chromium"),
    req("chromium-driver", "/usr/bin/chromedriver"),
];

/// Node.js and npm, which install and run Azurite (Azure Blob Storage's emulator, see
/// `env::azurite`). Azurite 3.37 declares node >= 22 but runs on bookworm's 18 (checked).
pub const NODE: &[Requirement] = &[req("nodejs", "/usr/bin/node"), req("npm", "/usr/bin/npm")];

/// GNU time, which the benchmarks use to measure each child's peak RSS.
pub const GNU_TIME: Requirement = req("time", "/usr/bin/time");

/// What the control plane needs to run besides etcd (openssl for certificates, curl for health
/// probes) and to build Kubernetes (Go, make, rsync, dpkg-source, the reflect2 fix).
pub const CONTROL_PLANE: &[Requirement] = &[
    req("golang-go", "/usr/bin/go"),
    req("rsync", "/usr/bin/rsync"),
    req("make", "/usr/bin/make"),
    req(
        "golang-github-modern-go-reflect2-dev",
        "/usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go",
    ),
    req("dpkg-dev", "/usr/bin/dpkg-source"),
    req("openssl", "/usr/bin/openssl"),
    req("curl", "/usr/bin/curl"),
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
#[allow(unsafe_code)]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The requirements of `required` whose file is missing.
pub fn missing(required: &[Requirement]) -> Vec<Requirement> {
    required
        .iter()
        .filter(|r| !Path::new(r.provides).exists())
        .copied()
        .collect()
}

/// Installs the package of every requirement whose file is missing, with `apt-get install -y`,
/// and then checks that each file is really there; without root, fails with the exact command.
pub fn ensure_packages(required: &[Requirement]) -> Result<()> {
    let missing_now = missing(required);
    if missing_now.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing_now.iter().map(|r| r.package).collect();
    packages.dedup();
    let list = packages.join(" ");
    if !is_root() {
        let files: Vec<&str> = missing_now.iter().map(|r| r.provides).collect();
        bail!(
            "missing {} (from Debian packages: {list})\nrun as root: apt-get update && apt-get install -y {list}",
            files.join(", ")
        );
    }
    println!("installing Debian packages: {list}");
    run_apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(packages.iter().copied());
    run_apt(&args)?;
    if let Some(still) = missing(required).first() {
        bail!(
            "Debian package {} is installed but {} is still missing: this build needs that file",
            still.package,
            still.provides
        );
    }
    Ok(())
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
