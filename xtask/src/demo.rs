//! `cargo xtask demo`: the main job, end to end on the embedded defaults.
//!
//! First the storage guarantees on a local-directory location scoped per cluster: schedule
//! expressions, scheduled backup naming, checksummed manifest-last backups, isolation between
//! clusters, verification that catches a flipped byte, and keep-N retention. Then the clusters
//! (see [`cluster`]): the local control plane is brought up, a sample app deployed on `c1`, the
//! fleet controller run against `mgmt` to back up `c1` and `c2` agentlessly in Velero's format
//! (its status table shown as it fills), a namespace deleted and restored from that backup, and
//! everything migrated to `c2` under a namespace mapping, verified object by object.

mod cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use backup_core::retention::{KeepCount, RetentionPolicy};
use backup_core::{Schedule, naming::scheduled_backup_name};
use backup_storage::{ArtifactName, BackupKind, BackupName, Repository, StorageError};
use bytes::Bytes;
use jiff::Timestamp;
use jiff::tz::TimeZone;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Directory used as the embedded file:// location (wiped at the start of each run).
    #[arg(long)]
    pub storage: Option<PathBuf>,
    /// How many scheduled backups to take.
    #[arg(long, default_value_t = 5)]
    pub backups: u32,
    /// Keep-N retention applied at the end.
    #[arg(long, default_value_t = 3)]
    pub keep: u32,
    /// Size of each backup's data artifact, in MiB.
    #[arg(long, default_value_t = 4)]
    pub artifact_mib: usize,
    /// Skip the cluster half (no local control plane needed).
    #[arg(long)]
    pub storage_only: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    // Built before the clock starts: the first build takes minutes, later ones a moment.
    let controller = match args.storage_only {
        true => None,
        false => Some(cluster::build_controller()?),
    };
    tokio::runtime::Runtime::new()?.block_on(demo(args, controller))
}

async fn demo(args: DemoArgs, controller: Option<PathBuf>) -> Result<()> {
    let keep = KeepCount::new(args.keep)?;
    ensure!(args.backups >= 1, "--backups must be at least 1");
    let dir = args
        .storage
        .unwrap_or_else(|| crate::workspace_root().join("target/demo-storage"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let url = format!("file://{}", dir.display());
    let started = Instant::now();

    step(&format!("1. storage location {url}"));
    let location = Repository::open(&url, &BTreeMap::new())?;
    let c1 = location.scoped_str("demo", "c1")?;
    let c2 = location.scoped_str("demo", "c2")?;
    for (cluster, repo) in [("c1", &c1), ("c2", &c2)] {
        let availability = repo.probe().await;
        ensure!(
            availability.is_available(),
            "location unusable for {cluster}: {availability:?}"
        );
        println!("   demo/{cluster}: available (sentinel written, read back, deleted)");
    }

    step("2. schedules");
    let from: Timestamp = "2026-11-20T23:30:00Z".parse()?;
    for expression in ["@every 20m", "0 2 * * *", "0 9 * * 1-5"] {
        let schedule = Schedule::parse(expression)?;
        let next: Vec<String> = schedule
            .upcoming(from, &TimeZone::UTC, 3)
            .iter()
            .map(|t| t.strftime("%a %H:%M").to_string())
            .collect();
        println!("   {expression:<12} after {from}: {}", next.join(", "));
    }

    step(&format!(
        "3. {} scheduled backups of c1 (\"0 2 * * *\")",
        args.backups
    ));
    let nightly = Schedule::parse("0 2 * * *")?;
    let data_artifact = ArtifactName::new("data.bin")?;
    let mut names = Vec::new();
    for (i, at) in nightly
        .upcoming(from, &TimeZone::UTC, args.backups as usize)
        .into_iter()
        .enumerate()
    {
        let name = BackupName::new(scheduled_backup_name("nightly", at))?;
        let mut writer = c1.begin_backup(BackupKind::Resources, &name).await?;
        let data = pseudo_random(args.artifact_mib << 20, i as u64);
        let record = writer.put_artifact_bytes(&data_artifact, data).await?;
        let attributes = BTreeMap::from([
            ("schedule".to_string(), "nightly".to_string()),
            ("scheduledFor".to_string(), at.to_string()),
        ]);
        writer.commit(attributes, None).await?;
        println!(
            "   {name}  {} bytes  sha256 {}…",
            record.size,
            &record.sha256[..16]
        );
        names.push(name);
    }

    step("4. a backup interrupted before its manifest is never listed");
    let crashed = BackupName::new("nightly-interrupted")?;
    let mut writer = c1.begin_backup(BackupKind::Resources, &crashed).await?;
    writer
        .put_artifact_bytes(&data_artifact, Bytes::from_static(b"half a backup"))
        .await?;
    drop(writer); // the process "dies" here: no commit, no manifest
    let listed = c1.list(BackupKind::Resources).await?;
    ensure!(
        listed.manifests.len() == names.len(),
        "expected {} committed backups, listed {}",
        names.len(),
        listed.manifests.len()
    );
    println!(
        "   c1 lists {} backups; the interrupted one is invisible",
        listed.manifests.len()
    );

    step("5. clusters are isolated by prefix");
    let c2_listing = c2.list(BackupKind::Resources).await?;
    ensure!(
        c2_listing.manifests.is_empty(),
        "c2 must not see c1's backups"
    );
    println!("   c2 lists 0 backups from the same location");

    step("6. every artifact verified against its recorded SHA-256");
    for name in &names {
        c1.verify(BackupKind::Resources, name).await?;
    }
    println!("   {} backups verified", names.len());

    step("7. a flipped byte in storage is caught");
    let victim = &names[0];
    let stored = dir
        .join("demo/c1")
        .join(BackupKind::Resources.dir())
        .join(victim.as_str())
        .join(data_artifact.as_str());
    flip_byte(&stored, 1234)?;
    match c1.verify(BackupKind::Resources, victim).await {
        Err(err @ StorageError::ChecksumMismatch { .. }) => println!("   refused: {err}"),
        Err(other) => bail!("expected a checksum mismatch, got: {other}"),
        Ok(_) => bail!("a corrupted artifact passed verification"),
    }

    step(&format!("8. keep-{} retention", keep.get()));
    let policy = RetentionPolicy {
        keep_last: Some(keep),
        ..RetentionPolicy::default()
    };
    let deleted = c1
        .sweep(BackupKind::Resources, &policy, Timestamp::now())
        .await?
        .deleted;
    let remaining = c1.list(BackupKind::Resources).await?.manifests;
    for name in &deleted {
        println!("   deleted {name}");
    }
    println!(
        "   kept {}",
        remaining
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let clusters = if let Some(controller) = controller {
        step("9. local control plane (mgmt, c1, c2 on 127.0.0.1)");
        let env_dir = crate::env::default_dir()?;
        let up_dir = env_dir.clone();
        tokio::task::spawn_blocking(move || crate::env::up_default(&up_dir)).await??;
        Some(cluster::run(&controller, &dir, &env_dir, step).await?)
    } else {
        None
    };

    println!(
        "\nreport: {} backups written and verified, 1 interrupted backup invisible, 1 corruption \
         caught, {} removed by retention, {} kept",
        names.len(),
        deleted.len(),
        remaining.len(),
    );
    if let Some(c) = clusters {
        let items: Vec<String> = c
            .backed_up
            .iter()
            .map(|(cluster, n)| format!("{cluster} {n} items"))
            .collect();
        println!(
            "        the fleet controller backed up {} clusters agentlessly ({}), artifacts \
             verified; demo-blog restored from its backup ({} objects created); migrated to c2 \
             ({} objects created); {} objects verified equal to the originals",
            c.backed_up.len(),
            items.join(", "),
            c.restored,
            c.migrated,
            c.verified
        );
    }
    println!("        in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

/// Incompressible but reproducible data, so each backup differs and its checksum means something.
fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    Bytes::from(data)
}

fn flip_byte(path: &Path, offset: usize) -> Result<()> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        offset < bytes.len(),
        "{} is too short to corrupt",
        path.display()
    );
    bytes[offset] ^= 0xff;
    std::fs::write(path, bytes)?;
    println!("   flipped byte {offset} of {}", path.display());
    Ok(())
}
