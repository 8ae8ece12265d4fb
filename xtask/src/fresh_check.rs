//! `cargo xtask fresh-check`: the README's set-up commands, exactly as written, on a fresh
//! Debian bookworm machine made here.
//!
//! The machine is a minimal root filesystem from Debian's packages (`mmdebstrap
//! --variant=minbase`, plus what a machine with Rust from rustup has: a C linker and CA
//! certificates), built once and cached as a tarball, unpacked anew for every run. It is entered
//! with mount and PID namespaces and `chroot`, as root like the README's commands (a user
//! namespace would take capabilities root has on a machine); only the host's Rust toolchain
//! (read-only) and a clone of the repository's committed HEAD (with its own, empty target
//! directory) are put inside, with the hosts file every installed machine has (naming
//! `localhost`). It shares the host's network, as a machine on the same network would, so apt and
//! crates.io answer, and with it the network's trust: the host's local CA certificates
//! (`/usr/local/share/ca-certificates`, e.g. a TLS-inspecting egress proxy's) and the variables
//! that point tools at the CA bundle ([`NETWORK_TRUST_VARS`]). Whatever a command needs beyond
//! that, it must install itself: this is what catches a prerequisite that developers' machines
//! happened to have.
//!
//! The report gives each command's time and, for a failure, its first error line; the full
//! output of each command is kept in `<dir>/logs/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::env::packages::Requirement;

/// `cargo xtask fresh-check` options.
#[derive(clap::Args, Debug)]
pub struct FreshCheckArgs {
    /// Where the root filesystem and the logs go [default: <workspace>/target/fresh-check].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Build the cached base tarball again (e.g. to pick up Debian's updates).
    #[arg(long)]
    refresh_base: bool,
    /// Keep the root filesystem afterwards (it is removed at the next run either way).
    #[arg(long)]
    keep: bool,
}

/// What `fresh-check` needs on the host: Debian's tool that builds root filesystems.
pub const MMDEBSTRAP: &[Requirement] = &[Requirement {
    package: "mmdebstrap",
    provides: "/usr/bin/mmdebstrap",
}];

/// Packages on top of `minbase`: what a machine where rustup installed Rust has (rustup needs a
/// C linker to build anything, and cargo needs CA certificates to reach crates.io).
const BASE_PACKAGES: &[&str] = &["ca-certificates", "gcc", "libc6-dev"];

/// A fresh bookworm's apt sources.
const SOURCES: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];

/// The hosts file Debian's installer writes (without the machine's own name).
const DEBIAN_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
                            ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n";

/// Where a machine keeps its local CA certificates (`update-ca-certificates` adds them to the
/// bundle).
const LOCAL_CAS: &str = "/usr/local/share/ca-certificates";

/// Variables that point tools at the CA bundle; passed in when the host sets them, as they
/// belong to the network the machine is on, not to this project.
const NETWORK_TRUST_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Where the repository is cloned inside the root filesystem.
const REPO_INSIDE: &str = "/root/backup-fleet";
/// Where the host's toolchain is mounted inside.
const RUST_INSIDE: &str = "/opt/rust";

/// Runs the check and prints the report; fails when a command failed.
pub fn run(args: FreshCheckArgs) -> Result<()> {
    let root = crate::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).context("reading README.md")?;
    let commands = readme_setup_commands(&readme)?;
    let dir = match args.dir {
        Some(dir) => std::path::absolute(dir)?,
        None => root.join("target/fresh-check"),
    };
    warn_if_dirty(&root);
    let base = base_tarball(args.refresh_base)?;
    let rootfs = dir.join("root");
    let logs = dir.join("logs");
    prepare_rootfs(&base, &rootfs, &root)?;
    if logs.exists() {
        std::fs::remove_dir_all(&logs)?;
    }
    std::fs::create_dir_all(&logs)?;
    println!(
        "running the README's set-up commands in {} (a clean Debian bookworm):",
        rootfs.display()
    );
    for command in &commands {
        println!("  {command}");
    }
    let results = run_inside(&rootfs, &logs, &commands)?;
    let report = report(&commands, &results, &logs);
    println!("\n{report}");
    std::fs::write(dir.join("report.txt"), &report)?;
    if !args.keep {
        std::fs::remove_dir_all(&rootfs)
            .with_context(|| format!("removing {}", rootfs.display()))?;
    }
    let failed = results.iter().filter(|r| r.exit_code != 0).count();
    ensure!(
        failed == 0 && results.len() == commands.len(),
        "{failed} of the README's set-up commands failed on a fresh machine (see above)"
    );
    Ok(())
}

/// The commands of the README's "Set-up" section: the lines of its first `sh` block, without
/// their comments.
pub fn readme_setup_commands(readme: &str) -> Result<Vec<String>> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Set-up"))
        .context("README.md has no `## Set-up` section")?;
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .context("README.md's Set-up section has no ```sh block")?;
    let commands: Vec<String> = block
        .lines()
        .map(|line| line.split(" #").next().unwrap_or(line).trim().to_string())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    ensure!(
        !commands.is_empty(),
        "README.md's Set-up block has no command"
    );
    Ok(commands)
}

fn warn_if_dirty(root: &Path) {
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output();
    if let Ok(out) = status
        && !out.stdout.is_empty()
    {
        println!("note: uncommitted changes are not part of the check (it clones HEAD)");
    }
}

/// The cached base tarball, built with mmdebstrap when missing (about 30 s).
fn base_tarball(refresh: bool) -> Result<PathBuf> {
    let cache = crate::env::cache_dir()?.join("fresh-check");
    std::fs::create_dir_all(&cache)?;
    let tarball = cache.join(format!("bookworm-minbase-{}.tar", BASE_PACKAGES.join("+")));
    if tarball.is_file() && !refresh {
        return Ok(tarball);
    }
    let partial = tarball.with_extension("tar.partial");
    println!("building a minimal Debian bookworm root filesystem with mmdebstrap (~30 s, cached)");
    let out = Command::new("mmdebstrap")
        .args(["--variant=minbase", "--format=tar", "--quiet"])
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg("bookworm")
        .arg(&partial)
        .args(SOURCES)
        .output()
        .context("running mmdebstrap")?;
    if !out.status.success() {
        bail!(
            "mmdebstrap failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&partial, &tarball)?;
    Ok(tarball)
}

/// Unpacks the base into `rootfs` (removing any earlier one), clones the repository's HEAD into
/// it and gives it the host's DNS settings.
fn prepare_rootfs(base: &Path, rootfs: &Path, repo: &Path) -> Result<()> {
    if rootfs.exists() {
        std::fs::remove_dir_all(rootfs)
            .with_context(|| format!("removing the previous {}", rootfs.display()))?;
    }
    std::fs::create_dir_all(rootfs)?;
    run_checked(
        Command::new("tar")
            .arg("-xf")
            .arg(base)
            .arg("-C")
            .arg(rootfs),
    )?;
    run_checked(
        Command::new("git")
            .args(["clone", "--quiet", "--no-hardlinks"])
            .arg(repo)
            .arg(inside(rootfs, REPO_INSIDE)),
    )?;
    std::fs::copy("/etc/resolv.conf", rootfs.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf")?;
    // Every installed machine (and every container) has a hosts file naming localhost; a root
    // filesystem from packages has none, since it is the installer's to write. Without it
    // `localhost` goes to the network's DNS, which no machine does.
    std::fs::write(rootfs.join("etc/hosts"), DEBIAN_HOSTS).context("writing /etc/hosts")?;
    if let Ok(entries) = std::fs::read_dir(LOCAL_CAS) {
        let target = inside(rootfs, LOCAL_CAS);
        std::fs::create_dir_all(&target)?;
        for entry in entries {
            let entry = entry?;
            std::fs::copy(entry.path(), target.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    std::fs::create_dir_all(inside(rootfs, RUST_INSIDE))?;
    Ok(())
}

/// `path` (absolute, as seen inside) under `rootfs`.
fn inside(rootfs: &Path, path: &str) -> PathBuf {
    rootfs.join(path.trim_start_matches('/'))
}

/// How one command ended.
#[derive(Debug, Clone)]
struct CommandResult {
    exit_code: i32,
    elapsed: Duration,
}

/// Enters the root filesystem (mount and PID namespaces, then chroot) and runs the commands one
/// after the other in one session, as a person would type them, each one's output shown and
/// kept in `logs/<n>.log`. Stops at the first failure. Every process left behind dies with the
/// PID namespace.
///
/// No user namespace: the README's commands run as root, and root in a user namespace lacks
/// capabilities that only the initial namespace grants (`CAP_LINUX_IMMUTABLE`, which `chattr
/// +i` in the storage tests needs), so it would report failures that no fresh machine has.
fn run_inside(rootfs: &Path, logs: &Path, commands: &[String]) -> Result<Vec<CommandResult>> {
    let sysroot = rust_sysroot()?;
    let results_file = logs.join("results");
    let script = session_script(rootfs, &sysroot, commands);
    let status = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--propagation", "private"])
        .args(["/bin/bash", "-c", &script, "fresh-check"])
        .arg(logs)
        .status()
        .context("starting unshare")?;
    let results = match std::fs::read_to_string(&results_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", results_file.display())),
    };
    let parsed = parse_results(&results);
    if parsed.is_empty() && !status.success() {
        bail!("entering the root filesystem failed ({status}); see the output above");
    }
    Ok(parsed)
}

/// The bash session run by unshare: mounts what a machine has (`/dev`,
/// `/proc`, `/sys`) and the toolchain read-only, then runs each command in the chroot.
fn session_script(rootfs: &Path, sysroot: &Path, commands: &[String]) -> String {
    let root = shell_quote(&rootfs.to_string_lossy());
    let rust = shell_quote(&inside(rootfs, RUST_INSIDE).to_string_lossy());
    let mut script = format!(
        "set -u\nlogs=$1\n\
         mount --rbind /dev {root}/dev\n\
         mount -t proc proc {root}/proc\n\
         mount --rbind /sys {root}/sys\n\
         mount --bind {sysroot} {rust}\n\
         mount -o remount,bind,ro {rust}\n\
         chroot {root} /usr/sbin/update-ca-certificates >/dev/null\n\
         n=0\n",
        sysroot = shell_quote(&sysroot.to_string_lossy()),
    );
    let path = format!(
        "{RUST_INSIDE}/bin:/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let trust: String = NETWORK_TRUST_VARS
        .iter()
        .filter_map(|name| {
            let value = std::env::var(name).ok()?;
            Some(format!(" {name}={}", shell_quote(&value)))
        })
        .collect();
    for command in commands {
        let inner = shell_quote(&format!("cd {REPO_INSIDE} && {command}"));
        script.push_str(&format!(
            "n=$((n+1))\nstart=$(date +%s)\n\
             chroot {root} /usr/bin/env -i HOME=/root PATH={path} LANG=C.UTF-8 TERM=dumb{trust} \
             /bin/bash -c {inner} 2>&1 | tee \"$logs/$n.log\"\n\
             code=${{PIPESTATUS[0]}}\n\
             echo \"$n $code $(( $(date +%s) - start ))\" >> \"$logs/results\"\n\
             [ \"$code\" = 0 ] || exit 0\n"
        ));
    }
    script
}

/// `<n> <exit code> <seconds>` lines, as the session writes them.
fn parse_results(text: &str) -> Vec<CommandResult> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let _n = parts.next()?;
            let exit_code = parts.next()?.parse().ok()?;
            let seconds = parts.next()?.parse().ok()?;
            Some(CommandResult {
                exit_code,
                elapsed: Duration::from_secs(seconds),
            })
        })
        .collect()
}

/// One line per command: its time and outcome, with the first error line of a failure.
fn report(commands: &[String], results: &[CommandResult], logs: &Path) -> String {
    let mut lines = vec!["fresh-check (clean Debian bookworm, the README's set-up):".to_string()];
    for (i, command) in commands.iter().enumerate() {
        let line = match results.get(i) {
            None => format!("  {command}: not run (an earlier command failed)"),
            Some(r) if r.exit_code == 0 => {
                format!("  {command}: ok in {}", minutes(r.elapsed))
            }
            Some(r) => {
                let log = logs.join(format!("{}.log", i + 1));
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                format!(
                    "  {command}: FAILED (exit {}) after {}; first error: {}\n    full output: {}",
                    r.exit_code,
                    minutes(r.elapsed),
                    first_error(&output).unwrap_or("(no line starting with `error`)"),
                    log.display()
                )
            }
        };
        lines.push(line);
    }
    lines.join("\n")
}

/// The first line that reads as an error in a command's output.
fn first_error(output: &str) -> Option<&str> {
    output.lines().map(str::trim).find(|line| {
        line.starts_with("error") || line.starts_with("Error:") || line.starts_with("E: ")
    })
}

fn minutes(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// The host toolchain's root (what `rustc --print sysroot` says).
fn rust_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    ensure!(out.status.success(), "rustc --print sysroot failed");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn run_checked(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {shown}"))?;
    ensure!(status.success(), "{shown} failed ({status})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_commands_are_the_lines_of_the_first_sh_block() {
        let readme = "# x\n\n## Set-up: two commands\n\nOn Debian:\n\n```sh\n\
                      cargo xtask demo   # the main job\n\
                      # a comment line\n\n\
                      cargo xtask test   # everything CI runs\n```\n\n```sh\nnot this\n```\n\
                      ## Using\n```sh\nnor this\n```\n";
        assert_eq!(
            readme_setup_commands(readme).unwrap(),
            ["cargo xtask demo", "cargo xtask test"]
        );
    }

    #[test]
    fn the_projects_readme_has_its_two_commands() {
        let readme = std::fs::read_to_string(crate::workspace_root().join("README.md")).unwrap();
        assert_eq!(
            readme_setup_commands(&readme).unwrap(),
            ["cargo xtask demo", "cargo xtask test"]
        );
    }

    #[test]
    fn a_readme_without_the_section_is_an_error() {
        let err = readme_setup_commands("# x\n## Usage\n```sh\nls\n```\n").unwrap_err();
        assert!(err.to_string().contains("Set-up"), "{err}");
    }

    #[test]
    fn results_and_report() {
        let results = parse_results("1 0 1500\n2 101 62\n");
        assert_eq!(results.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("2.log"),
            "   Compiling x\nwarning: w\nerror: could not find `protoc`\nerror: later\n",
        )
        .unwrap();
        let commands = ["cargo xtask demo".to_string(), "cargo xtask test".into()];
        let text = report(&commands, &results, dir.path());
        assert!(text.contains("cargo xtask demo: ok in 25m00s"), "{text}");
        assert!(
            text.contains(
                "cargo xtask test: FAILED (exit 101) after 1m02s; first error: error: could not find `protoc`"
            ),
            "{text}"
        );
        let text = report(&commands, &results[..1], dir.path());
        assert!(text.contains("cargo xtask test: not run"), "{text}");
    }
}
