//! One module per command group; each turns parsed arguments into library calls and output.

mod location;
mod schedule;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Group, LocationCommand, ScheduleCommand};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Group::Location(LocationCommand::Check(args)) => location::check(args).await,
        Group::Schedule(ScheduleCommand::Next(args)) => schedule::next(args),
    }
}
