//! One module per command group; each turns parsed arguments into library calls and output.

pub(crate) mod backup;
mod crypt_args;
mod direct_args;
pub(crate) mod etcd;
mod etcd_agent;
mod location;
pub(crate) mod restore;
mod schedule;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Group, LocationCommand, ScheduleCommand};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Group::Location(LocationCommand::Check(args)) => location::check(args).await,
        Group::Location(LocationCommand::Gc(args)) => location::gc(args).await,
        Group::Location(LocationCommand::MigrateLayout(args)) => {
            location::migrate_layout(args).await
        }
        Group::Schedule(ScheduleCommand::Next(args)) => schedule::next(args),
        Group::Etcd(command) => etcd::run(command).await,
        Group::Backup(command) => backup::run(command).await,
        Group::Restore(command) => restore::run(command).await,
    }
}
