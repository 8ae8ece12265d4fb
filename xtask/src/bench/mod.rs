//! `cargo xtask bench ...`: each benchmark runs us and the named peer in the same run and prints
//! both figures and their ratio.

mod child;
mod controller;
#[cfg(feature = "etcd-bench")]
mod etcd;
mod etcd_schedule;
mod resources;
mod restore;
mod storage;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Upload a large artifact to a local S3 server (s3s-fs), ours vs `rclone copy`.
    Storage(storage::StorageBenchArgs),
    /// Snapshot a ~256 MiB etcd: `backupctl etcd snapshot` vs `etcdctl snapshot save`.
    #[cfg(feature = "etcd-bench")]
    Etcd(etcd::EtcdBenchArgs),
    /// Snapshot a ~256 MiB etcd: `backupctl etcd snapshot` vs `etcdctl snapshot save`
    /// (installs protoc and etcd, then re-runs xtask with the `etcd-bench` feature).
    #[cfg(not(feature = "etcd-bench"))]
    Etcd {
        /// Options of the etcd benchmark (see `cargo xtask bench etcd -- --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// EtcdBackupConfigs at `@every 1m` on the three local etcds for 10 minutes: every snapshot
    /// on time (lag from its slot) and rotation exact.
    EtcdSchedule(etcd_schedule::EtcdScheduleBenchArgs),
    /// Back up and restore 10k small objects: backupctl vs kubectl and the raw paged LIST.
    Resources(resources::ResourcesBenchArgs),
    /// A ClusterRestore of 10k ConfigMaps by the controller vs `backupctl restore create` of the
    /// same backup into the same cluster.
    Restore(restore::RestoreBenchArgs),
    /// The fleet controller at 500 clusters: one ClusterBackup vs the same backups run one after
    /// another with backupctl, plus its peak RSS, idle CPU and firing lag.
    Controller(controller::ControllerBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Storage(args) => {
            ensure_peer(crate::env::packages::Requirement {
                package: "rclone",
                provides: "/usr/bin/rclone",
            })?;
            storage::run(args)
        }
        #[cfg(feature = "etcd-bench")]
        BenchCommand::Etcd(args) => {
            use crate::env::packages::{ETCD, GNU_TIME, ensure_packages};
            ensure_packages(ETCD)?;
            ensure_packages(&[GNU_TIME])?;
            etcd::run(args)
        }
        #[cfg(not(feature = "etcd-bench"))]
        BenchCommand::Etcd { args } => rerun_with_etcd_bench(&args),
        BenchCommand::Resources(args) => {
            ensure_peer(crate::env::packages::Requirement {
                package: "kubernetes-client",
                provides: "/usr/bin/kubectl",
            })?;
            // GNU time measures each child's own peak RSS (see bench::child::run_measured).
            crate::env::packages::ensure_packages(&[crate::env::packages::GNU_TIME])?;
            resources::run(args)
        }
        BenchCommand::EtcdSchedule(args) => etcd_schedule::run(args),
        BenchCommand::Restore(args) => {
            // The peer's restores are measured under GNU time (see bench::child::run_measured).
            crate::env::packages::ensure_packages(&[crate::env::packages::GNU_TIME])?;
            restore::run(args)
        }
        BenchCommand::Controller(args) => {
            // The peer's runs are measured under GNU time (see bench::child::run_measured).
            crate::env::packages::ensure_packages(&[crate::env::packages::GNU_TIME])?;
            controller::run(args)
        }
    }
}

/// The peer a benchmark compares against must be there; install its Debian package if not.
fn ensure_peer(peer: crate::env::packages::Requirement) -> anyhow::Result<()> {
    crate::env::packages::ensure_packages(&[peer])
}

/// Installs what the etcd benchmark needs to build and run (protoc for etcd's gRPC client,
/// etcd and etcdctl), then runs xtask again with the `etcd-bench` feature.
#[cfg(not(feature = "etcd-bench"))]
fn rerun_with_etcd_bench(args: &[String]) -> anyhow::Result<()> {
    use crate::env::packages::{ETCD, GNU_TIME, PROTOC, ensure_packages};
    ensure_packages(PROTOC)?;
    ensure_packages(ETCD)?;
    ensure_packages(&[GNU_TIME])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["run", "--quiet", "-p", "xtask", "--features", "etcd-bench"])
        .args(["--", "bench", "etcd"])
        .args(args)
        .status()?;
    anyhow::ensure!(status.success(), "the etcd benchmark failed ({status})");
    Ok(())
}
