//! Command-line grammar of `backupctl`, kubectl-like: `backupctl <group> <verb> [args]`.

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

#[derive(Parser)]
#[command(
    name = "backupctl",
    version,
    about = "Back up, restore and migrate Kubernetes clusters and their etcd",
    long_about = "Back up, restore and migrate Kubernetes clusters and their etcd.\n\n\
                  What the commands need: a storage location (--location URL); for commands \
                  that read or write a cluster, a kubeconfig (--kubeconfig, else $KUBECONFIG or \
                  ~/.kube/config). Each cluster's backups have their own folder in a location, \
                  named by --project and --cluster: the backup-controller keeps a \
                  ManagedCluster's backups under its namespace and name, so name both to work \
                  on them (the defaults default/local are for backups made by backupctl alone).\n\n\
                  Storage locations are URLs: file:///dir (the embedded default), s3://bucket/prefix, \
                  gs://bucket/prefix, az://container/prefix, memory://. S3 settings come from the \
                  standard AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, \
                  AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP) or from --option key=value."
)]
pub struct Cli {
    /// More diagnostics on stderr: -v what is being done, -vv details (RUST_LOG overrides).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Group,
}

#[derive(Subcommand)]
pub enum Group {
    /// Storage locations: check that a location can be used before relying on it.
    #[command(subcommand)]
    Location(LocationCommand),
    /// Schedules: see when a schedule expression fires before using it.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// etcd snapshots: take, list, restore and rotate them.
    #[command(subcommand)]
    Etcd(crate::commands::etcd::EtcdCommand),
    /// Backups of a cluster's resources in Velero's format, taken from outside the cluster.
    #[command(subcommand)]
    Backup(crate::commands::backup::BackupCommand),
    /// Restores of such backups, into the same or another cluster.
    #[command(subcommand)]
    Restore(crate::commands::restore::RestoreCommand),
}

#[derive(Subcommand)]
pub enum LocationCommand {
    /// Write, read back and delete a small sentinel object, and say why it failed if it did.
    ///
    /// Exits 0 when the location is available and 1 otherwise, so scripts can gate on it.
    Check(LocationCheckArgs),
    /// Delete what interrupted backups left behind: directories with artifacts but no manifest
    /// (never listed, never restorable), untouched for the grace period.
    ///
    /// Backups Velero wrote into a shared location (a velero-backup.json without our manifest)
    /// are never touched. Exits 0 when nothing was refused.
    Gc(LocationGcArgs),
    /// Move backups written before the `velero/` folder into it.
    ///
    /// A cluster's resource backups and restore records now live in
    /// <location>/<project>/<cluster>/velero/ (the prefix its Velero BackupStorageLocation
    /// points at, which must hold only Velero's folders); etcd snapshots stay beside it.
    /// Backups in the old place (backups/ and restores/ directly in the cluster's folder) are
    /// not listed until they are moved. Each backup's files are copied first and its manifest
    /// last, then the old files are deleted; no key is written twice, so Object Lock buckets
    /// work; an interrupted move is resumed by running the command again.
    MigrateLayout(LocationMigrateArgs),
}

#[derive(Args)]
pub struct LocationMigrateArgs {
    /// Location URL, e.g. file:///var/lib/backups or s3://bucket/prefix.
    pub location: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Every cluster under the location that holds backups in the old place, instead of the
    /// one named by --project/--cluster.
    #[arg(long)]
    pub all_clusters: bool,
    /// Location option overriding the environment, e.g. --option region=eu-west-1 (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// Say which clusters have backups to move, move nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct LocationGcArgs {
    /// Location URL, e.g. file:///var/lib/backups or s3://bucket/prefix.
    pub location: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Location option overriding the environment, e.g. --option region=eu-west-1 (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// Only leftovers untouched for this long (Go duration) are removed, so uploads still in
    /// progress are safe.
    #[arg(long, default_value = "24h")]
    pub grace: String,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct LocationCheckArgs {
    /// Location URL, e.g. file:///var/lib/backups or s3://bucket/prefix.
    pub location: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Location option overriding the environment, e.g. --option region=eu-west-1 (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Which cluster's prefix inside the location to use; each cluster sees only its own backups.
#[derive(Args)]
pub struct ScopeArgs {
    /// Project the cluster belongs to (first prefix segment): the namespace of its
    /// ManagedCluster for backups the controller made.
    #[arg(long, default_value = "default")]
    pub project: String,
    /// Cluster whose backups to work on (second prefix segment): the ManagedCluster's name for
    /// backups the controller made.
    #[arg(long, default_value = "local")]
    pub cluster: String,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Print the next times a schedule fires.
    ///
    /// Accepts 5-field cron as Kubernetes reads it (weekday 0-6, Sunday = 0 or 7),
    /// @yearly/@monthly/@weekly/@daily/@hourly and @every <duration> (e.g. @every 20m).
    Next(ScheduleNextArgs),
}

#[derive(Args)]
pub struct ScheduleNextArgs {
    /// The schedule expression, quoted: "0 2 * * *", "@daily", "@every 1h30m".
    pub expression: String,
    /// How many fire times to print.
    #[arg(short = 'n', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,
    /// Start from this instant (RFC 3339, e.g. 2026-03-29T00:00:00Z) instead of now.
    #[arg(long)]
    pub after: Option<jiff::Timestamp>,
    /// Time zone the cron fields are read in (IANA name); UTC by default, as Velero does.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().into(), value.into())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_must_be_key_value() {
        assert_eq!(
            parse_key_value("region=eu=1").unwrap(),
            ("region".into(), "eu=1".into())
        );
        assert!(parse_key_value("region").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_key_value("=x").is_err());
    }
}
