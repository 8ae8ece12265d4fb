//! `cargo xtask bench ...`: each benchmark runs us and the named peer in the same run and prints
//! both figures and their ratio.

mod storage;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Upload a large artifact to a local S3 server (s3s-fs), ours vs `rclone copy`.
    Storage(storage::StorageBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Storage(args) => storage::run(args),
    }
}
