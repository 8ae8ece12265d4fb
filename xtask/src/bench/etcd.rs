//! `cargo xtask bench etcd`: fill a real etcd with ~256 MiB of large random values, then take
//! snapshots alternately with our `backupctl etcd snapshot` (release build, child process, to a
//! file:// location) and `etcdctl snapshot save` (to local disk), and print the best times,
//! their ratio (goal ≤ 1.2×), our peak RSS as GNU time measures it (goal ≤ 64 MiB) and the
//! compression ratio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::child::{Measured, build_backupctl, process_cpu, run_measured};
use anyhow::Context;
use backup_etcd::testing::EtcdServer;
use backup_storage::{BackupKind, Repository};

/// Options for the etcd benchmark.
#[derive(clap::Args, Debug)]
pub struct EtcdBenchArgs {
    /// Approximate database size to create, in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Runs per tool (alternating); the best run of each is reported.
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Use this backupctl instead of building `--release -p backup-cli`.
    #[arg(long)]
    backupctl: Option<PathBuf>,
}

/// Value size: large values, as the issue asks; 16 per transaction stays under etcd's 1.5 MiB
/// request limit.
const VALUE_BYTES: usize = 64 * 1024;
const PUTS_PER_TXN: usize = 16;

pub fn run(args: EtcdBenchArgs) -> anyhow::Result<()> {
    let backupctl = match &args.backupctl {
        Some(path) => path.clone(),
        None => build_backupctl()?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let server = runtime
        .block_on(EtcdServer::start())
        .context("starting etcd (Debian etcd-server at /usr/bin/etcd)")?;
    eprintln!(
        "filling etcd at {} with ~{} MiB",
        server.endpoint(),
        args.size_mib
    );
    runtime.block_on(fill(&server, args.size_mib))?;
    let status = runtime.block_on(backup_etcd::member_status(&server.connection()))?;
    eprintln!(
        "etcd database: {:.1} MiB at revision {}",
        mib(status.db_size as u64),
        status.revision
    );

    let work = tempfile::Builder::new().prefix("bench-etcd-").tempdir()?;
    let location = work.path().join("location");
    std::fs::create_dir(&location)?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut peak_rss_kib = 0;
    // Both tools share the machine's cores with the etcd they read from, so the CPU each one
    // and etcd spend is shown next to the wall time.
    let etcd_cpu = || process_cpu(server.pid());
    for run in 0..args.runs {
        let name = format!("bench-{run}");
        let before = etcd_cpu()?;
        let measured = run_ours(&backupctl, server.endpoint(), &location, &name)?;
        eprintln!(
            "run {run}: backupctl {:.2} s, CPU {:.2} s (etcd {:.2} s), peak RSS {:.1} MiB",
            measured.elapsed.as_secs_f64(),
            measured.cpu.as_secs_f64(),
            (etcd_cpu()? - before).as_secs_f64(),
            measured.peak_rss_kib as f64 / 1024.0
        );
        ours.push(measured.elapsed);
        peak_rss_kib = peak_rss_kib.max(measured.peak_rss_kib);
        let file = work.path().join(format!("etcdctl-{run}.db"));
        let before = etcd_cpu()?;
        let measured = run_etcdctl(server.endpoint(), &file)?;
        eprintln!(
            "run {run}: etcdctl   {:.2} s, CPU {:.2} s (etcd {:.2} s)",
            measured.elapsed.as_secs_f64(),
            measured.cpu.as_secs_f64(),
            (etcd_cpu()? - before).as_secs_f64(),
        );
        theirs.push(measured.elapsed);
        std::fs::remove_file(&file)?;
    }

    let repo = Repository::open(&format!("file://{}", location.display()), &BTreeMap::new())?
        .scoped_str("default", "local")?;
    let listing = runtime.block_on(repo.list(BackupKind::EtcdSnapshot))?;
    let manifest = listing
        .manifests
        .first()
        .context("our snapshot is not listed")?;
    let db_bytes: u64 = manifest
        .attributes
        .get(backup_etcd::attributes::SNAPSHOT_SIZE)
        .and_then(|v| v.parse().ok())
        .context("snapshot size attribute missing")?;
    let stored = manifest.total_size();

    let best_ours = ours.iter().min().copied().unwrap_or_default();
    let best_theirs = theirs.iter().min().copied().unwrap_or_default();
    let ratio = best_ours.as_secs_f64() / best_theirs.as_secs_f64();
    println!(
        "etcd snapshot benchmark ({:.1} MiB database)",
        mib(db_bytes)
    );
    println!(
        "  backupctl etcd snapshot (zstd, file://): {:7.2} s  {:7.1} MiB/s",
        best_ours.as_secs_f64(),
        mib(db_bytes) / best_ours.as_secs_f64()
    );
    println!(
        "  etcdctl snapshot save (local disk):      {:7.2} s  {:7.1} MiB/s",
        best_theirs.as_secs_f64(),
        mib(db_bytes) / best_theirs.as_secs_f64()
    );
    println!("  ratio ours/etcdctl:      {ratio:7.2}x (goal ≤ 1.2x)");
    println!(
        "  our peak RSS (GNU time):  {:7.1} MiB (goal ≤ 64 MiB)",
        peak_rss_kib as f64 / 1024.0
    );
    println!(
        "  compression ratio:        {:7.2}x ({:.1} MiB → {:.1} MiB)",
        db_bytes as f64 / stored as f64,
        mib(db_bytes),
        mib(stored)
    );
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Writes `size_mib` of 64 KiB values: half random bytes (incompressible, as encrypted or
/// binary payloads are), half random hex text (as typical Kubernetes objects compress).
async fn fill(server: &EtcdServer, size_mib: u64) -> anyhow::Result<()> {
    let mut client = server.client().await?;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let values = (size_mib * 1024 * 1024) as usize / VALUE_BYTES;
    for batch in 0..values.div_ceil(PUTS_PER_TXN) {
        let mut ops = Vec::with_capacity(PUTS_PER_TXN);
        for i in 0..PUTS_PER_TXN {
            let n = batch * PUTS_PER_TXN + i;
            let mut value = Vec::with_capacity(VALUE_BYTES);
            if n.is_multiple_of(2) {
                while value.len() < VALUE_BYTES {
                    value.extend_from_slice(&next().to_le_bytes());
                }
            } else {
                while value.len() < VALUE_BYTES {
                    value.extend_from_slice(format!("{:016x}", next()).as_bytes());
                }
            }
            value.truncate(VALUE_BYTES);
            ops.push((format!("/bench/{n:08}").into_bytes(), value));
        }
        client.put_all(ops).await?;
    }
    Ok(())
}

/// Runs our snapshot as a child.
fn run_ours(
    backupctl: &Path,
    endpoint: &str,
    location: &Path,
    name: &str,
) -> anyhow::Result<Measured> {
    run_measured(
        Command::new(backupctl)
            .args(["etcd", "snapshot", "--endpoints", endpoint, "--name", name])
            .arg("--location")
            .arg(format!("file://{}", location.display())),
        Stdio::null(),
        "backupctl etcd snapshot",
    )
}

fn run_etcdctl(endpoint: &str, file: &Path) -> anyhow::Result<Measured> {
    run_measured(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint, "snapshot", "save"])
            .arg(file),
        Stdio::null(),
        "etcdctl snapshot save (Debian etcd-client)",
    )
}
