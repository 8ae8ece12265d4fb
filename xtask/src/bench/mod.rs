//! `cargo xtask bench ...`: each benchmark runs us and the named peer in the same run and prints
//! both figures and their ratio.

mod child;
mod etcd;
mod resources;
mod storage;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Upload a large artifact to a local S3 server (s3s-fs), ours vs `rclone copy`.
    Storage(storage::StorageBenchArgs),
    /// Snapshot a ~256 MiB etcd: `backupctl etcd snapshot` vs `etcdctl snapshot save`.
    Etcd(etcd::EtcdBenchArgs),
    /// Back up and restore 10k small objects: backupctl vs kubectl and the raw paged LIST.
    Resources(resources::ResourcesBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Storage(args) => {
            ensure_peer("rclone", "rclone")?;
            storage::run(args)
        }
        BenchCommand::Etcd(args) => {
            crate::env::packages::ensure_packages(&["etcd-server", "etcd-client"])?;
            etcd::run(args)
        }
        BenchCommand::Resources(args) => {
            ensure_peer("kubectl", "kubernetes-client")?;
            resources::run(args)
        }
    }
}

/// The peer a benchmark compares against must be there; install its Debian package if not.
fn ensure_peer(program: &str, package: &'static str) -> anyhow::Result<()> {
    if crate::test_runner::which(program).is_none() {
        crate::env::packages::ensure_packages(&[package])?;
    }
    Ok(())
}
