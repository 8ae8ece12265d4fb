//! `backupctl location ...`

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use backup_storage::{Availability, Repository};
use serde::Serialize;

use crate::cli::LocationCheckArgs;
use crate::output::{self, Tabular};

#[derive(Serialize)]
struct CheckReport {
    location: String,
    scope: String,
    available: bool,
    reason: &'static str,
    message: String,
}

impl Tabular for CheckReport {
    fn header() -> Vec<&'static str> {
        vec!["LOCATION", "SCOPE", "AVAILABLE", "REASON", "MESSAGE"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.location.clone(),
            self.scope.clone(),
            self.available.to_string(),
            self.reason.into(),
            self.message.clone(),
        ]
    }
}

pub async fn check(args: LocationCheckArgs) -> Result<ExitCode> {
    let options: BTreeMap<String, String> = args.options.into_iter().collect();
    let repository = Repository::open(&args.location, &options)
        .and_then(|repo| repo.scoped_str(&args.scope.project, &args.scope.cluster))
        .with_context(|| format!("cannot use location {}", args.location))?;
    let availability = repository.probe().await;
    let report = CheckReport {
        location: args.location,
        scope: format!("{}/{}", args.scope.project, args.scope.cluster),
        available: availability.is_available(),
        reason: availability.reason(),
        message: availability.to_string(),
    };
    output::print(std::slice::from_ref(&report), args.output)?;
    Ok(match availability {
        Availability::Available => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
