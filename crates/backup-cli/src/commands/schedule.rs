//! `backupctl schedule ...`

use std::process::ExitCode;

use anyhow::{Context, Result};
use backup_core::Schedule;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::cli::ScheduleNextArgs;
use crate::output::{self, Tabular};

#[derive(Serialize)]
struct FireTime {
    utc: Timestamp,
    local: String,
}

impl Tabular for FireTime {
    fn header() -> Vec<&'static str> {
        vec!["UTC", "LOCAL"]
    }
    fn row(&self) -> Vec<String> {
        vec![self.utc.to_string(), self.local.clone()]
    }
}

pub fn next(args: ScheduleNextArgs) -> Result<ExitCode> {
    let schedule = Schedule::parse(&args.expression)?;
    let tz = TimeZone::get(&args.time_zone).with_context(|| {
        format!(
            "unknown time zone {:?}: use an IANA name such as UTC or Europe/Berlin",
            args.time_zone
        )
    })?;
    let after = args.after.unwrap_or_else(Timestamp::now);
    let times: Vec<FireTime> = schedule
        .upcoming(after, &tz, usize::from(args.count))
        .into_iter()
        .map(|utc| FireTime {
            utc,
            local: utc
                .to_zoned(tz.clone())
                .strftime("%a %Y-%m-%d %H:%M:%S %Z")
                .to_string(),
        })
        .collect();
    output::print(&times, args.output)?;
    Ok(ExitCode::SUCCESS)
}
