//! `cargo xtask bench ...`: each benchmark runs us and the named peer in the same run and prints
//! both figures and their ratio.

mod admission;
mod child;
mod controller;
mod etcd;
mod etcd_schedule;
mod resources;
mod restore;
mod storage;

use clap::Subcommand;

use crate::env::packages::{ETCD, GNU_TIME, Requirement};
use crate::prerequisites::Needs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Upload a large artifact to a local S3 server (s3s-fs), ours vs `rclone copy`.
    Storage(storage::StorageBenchArgs),
    /// Snapshot a ~256 MiB etcd: `backupctl etcd snapshot` vs `etcdctl snapshot save`.
    Etcd(etcd::EtcdBenchArgs),
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

impl BenchCommand {
    /// What the benchmark and its peer need on the machine (see [`crate::prerequisites`]).
    pub fn needs(&self) -> Needs {
        let measured = Needs::debian(&[GNU_TIME]);
        match self {
            BenchCommand::Storage(_) => Needs::debian(&[RCLONE]).and(Needs::s3s_fs()),
            BenchCommand::Etcd(_) => Needs::debian(ETCD).and(measured),
            BenchCommand::EtcdSchedule(_) => Needs::control_plane(),
            BenchCommand::Resources(_) => Needs::control_plane()
                .and(Needs::debian(&[KUBECTL]))
                .and(measured),
            BenchCommand::Restore(_) | BenchCommand::Controller(_) => {
                Needs::control_plane().and(measured)
            }
        }
    }
}

/// The peer of `bench storage`.
const RCLONE: Requirement = Requirement {
    package: "rclone",
    provides: "/usr/bin/rclone",
};

/// The peer of `bench resources`.
const KUBECTL: Requirement = Requirement {
    package: "kubernetes-client",
    provides: "/usr/bin/kubectl",
};

/// Runs one benchmark; `cargo xtask` has installed [`BenchCommand::needs`] first (GNU time
/// measures each child's own peak RSS, see `bench::child::run_measured`).
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Storage(args) => storage::run(args),
        BenchCommand::Etcd(args) => etcd::run(args),
        BenchCommand::EtcdSchedule(args) => etcd_schedule::run(args),
        BenchCommand::Resources(args) => resources::run(args),
        BenchCommand::Restore(args) => restore::run(args),
        BenchCommand::Controller(args) => controller::run(args),
    }
}
