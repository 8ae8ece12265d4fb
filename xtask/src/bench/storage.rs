//! `cargo xtask bench storage`: upload one large incompressible file to a local S3 server
//! (s3s-fs on 127.0.0.1) with our repository, with our repository encrypting it with age (one
//! X25519 recipient), and with `rclone copyto`, alternately, and print best times,
//! throughput, the ratios ours/rclone and encrypted/unencrypted, and our peak RSS.
//!
//! Our upload runs in a child process (this binary re-executed with a hidden flag) so its peak
//! RSS (VmHWM) is measured alone, not mixed with the benchmark driver's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use backup_storage::testing::{ACCESS_KEY, S3sFs, SECRET_KEY};
use backup_storage::{
    ArtifactName, BackupKind, BackupName, Encryption, Identities, Location, Repository,
    UploadOptions,
};

const BUCKET: &str = "bench";

/// Options for the storage benchmark.
#[derive(clap::Args, Debug)]
pub struct StorageBenchArgs {
    /// Size of the generated file in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Runs per tool (alternating); the best run of each is reported.
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Multipart part size in MiB (used for both tools).
    #[arg(long, default_value_t = 8)]
    part_mib: usize,
    /// Parts uploaded concurrently (used for both tools).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Internal: run one upload of this file and report as JSON (used by the driver).
    #[arg(long, hide = true)]
    child_upload: Option<PathBuf>,
    /// Internal: S3 endpoint for the child upload.
    #[arg(long, hide = true)]
    endpoint: Option<String>,
    /// Internal: backup name for the child upload.
    #[arg(long, hide = true)]
    name: Option<String>,
    /// Internal: the child encrypts the upload with age to a fresh recipient.
    #[arg(long, hide = true)]
    encrypt: bool,
}

pub fn run(args: StorageBenchArgs) -> anyhow::Result<()> {
    if let Some(file) = &args.child_upload {
        return child_upload(&args, file);
    }
    let work = WorkDir(tempfile_dir()?);
    let file = work.0.join("payload.bin");
    let size = args.size_mib * 1024 * 1024;
    eprintln!(
        "generating {} MiB of pseudo-random data in {}",
        args.size_mib,
        file.display()
    );
    generate(&file, size)?;

    let server = S3sFs::start().context("starting s3s-fs")?;
    server.create_bucket(BUCKET)?;
    eprintln!("s3s-fs listening on {}", server.endpoint());

    let mut ours = Vec::new();
    let mut encrypted = Vec::new();
    let mut rclone = Vec::new();
    let mut peak_rss_kib = 0u64;
    let mut encrypted_rss_kib = 0u64;
    for run in 0..args.runs {
        let (secs, rss) = run_ours(&args, &server, &file, run, false)?;
        eprintln!("run {run}: ours   {secs:.2} s, peak RSS {} MiB", rss / 1024);
        ours.push(secs);
        peak_rss_kib = peak_rss_kib.max(rss);
        clear_bucket(&server)?;

        let (secs, rss) = run_ours(&args, &server, &file, run, true)?;
        eprintln!(
            "run {run}: ours encrypted {secs:.2} s, peak RSS {} MiB",
            rss / 1024
        );
        encrypted.push(secs);
        encrypted_rss_kib = encrypted_rss_kib.max(rss);
        clear_bucket(&server)?;

        let secs = run_rclone(&args, &server, &file, run)?;
        eprintln!("run {run}: rclone {secs:.2} s");
        rclone.push(secs);
        clear_bucket(&server)?;
    }
    drop(work);

    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (best_ours, best_rclone) = (best(&ours), best(&rclone));
    let best_encrypted = best(&encrypted);
    let mib = args.size_mib as f64;
    println!(
        "storage bench: {} MiB to s3s-fs on 127.0.0.1, {} MiB parts × {} in flight, best of {}",
        args.size_mib, args.part_mib, args.concurrency, args.runs
    );
    println!(
        "  ours   (backup-storage): {best_ours:7.2} s  {:8.1} MiB/s",
        mib / best_ours
    );
    println!(
        "  ours encrypted (age):    {best_encrypted:7.2} s  {:8.1} MiB/s",
        mib / best_encrypted
    );
    println!(
        "  rclone copyto:           {best_rclone:7.2} s  {:8.1} MiB/s",
        mib / best_rclone
    );
    println!(
        "  ratio ours/rclone:       {:7.2}×  (goal ≤ 1.00×)",
        best_ours / best_rclone
    );
    println!(
        "  ratio encrypted/unencr.: {:7.2}×  (goal ≤ 1.15×)",
        best_encrypted / best_ours
    );
    println!(
        "  our peak RSS (VmHWM):    {:7.1} MiB (goal ≤ 64 MiB), encrypted {:.1} MiB",
        peak_rss_kib as f64 / 1024.0,
        encrypted_rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// Removes the generated payload even when a run fails.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xtask-bench-storage-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `size` bytes of xorshift output: incompressible, and fast to generate.
fn generate(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

fn clear_bucket(server: &S3sFs) -> anyhow::Result<()> {
    let bucket = server.root().join(BUCKET);
    std::fs::remove_dir_all(&bucket)?;
    std::fs::create_dir_all(&bucket)?;
    Ok(())
}

fn run_ours(
    args: &StorageBenchArgs,
    server: &S3sFs,
    file: &Path,
    run: u32,
    encrypt: bool,
) -> anyhow::Result<(f64, u64)> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args(["bench", "storage", "--child-upload"])
        .arg(file)
        .args([
            "--endpoint",
            &server.endpoint(),
            "--name",
            &format!("ours-{run}"),
        ])
        .args(["--part-mib", &args.part_mib.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()]);
    if encrypt {
        command.arg("--encrypt");
    }
    let output = command
        .output()
        .context("running our upload in a child process")?;
    if !output.status.success() {
        bail!(
            "our upload failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing the child's report")?;
    let secs = report["secs"].as_f64().context("child report lacks secs")?;
    let rss = report["vm_hwm_kib"]
        .as_u64()
        .context("child report lacks vm_hwm_kib")?;
    Ok((secs, rss))
}

fn run_rclone(
    args: &StorageBenchArgs,
    server: &S3sFs,
    file: &Path,
    run: u32,
) -> anyhow::Result<f64> {
    let mut command = Command::new("rclone");
    // rclone reads AWS_* (e.g. AWS_CA_BUNDLE) and fails on some; it gets its config from
    // RCLONE_CONFIG_BENCH_* only, like our child gets explicit options only.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    let started = Instant::now();
    let status = command
        .arg("copyto")
        .arg(file)
        .arg(format!("bench:{BUCKET}/rclone-{run}/payload.bin"))
        .args(["--s3-chunk-size", &format!("{}M", args.part_mib)])
        .args(["--s3-upload-concurrency", &args.concurrency.to_string()])
        .args(["--s3-upload-cutoff", &format!("{}M", args.part_mib)])
        .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
        .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
        .env("RCLONE_CONFIG_BENCH_ENDPOINT", server.endpoint())
        .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_BENCH_REGION", "us-east-1")
        .env("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true")
        .status()
        .context("running rclone (install Debian's `rclone`)")?;
    if !status.success() {
        bail!("rclone copyto failed with {status}");
    }
    Ok(started.elapsed().as_secs_f64())
}

fn child_upload(args: &StorageBenchArgs, file: &Path) -> anyhow::Result<()> {
    let endpoint = args
        .endpoint
        .clone()
        .context("--endpoint is required with --child-upload")?;
    let name = BackupName::new(args.name.clone().unwrap_or_else(|| "bench".into()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let elapsed: Duration = runtime.block_on(async {
        let options = std::collections::BTreeMap::from([
            ("s3Url".to_string(), endpoint),
            ("region".to_string(), "us-east-1".to_string()),
            ("access_key_id".to_string(), ACCESS_KEY.to_string()),
            ("secret_access_key".to_string(), SECRET_KEY.to_string()),
        ]);
        let store =
            Location::parse(&format!("s3://{BUCKET}/ours"))?.open_with_env(&options, |_| None)?;
        let mut repo = Repository::new(store).with_upload_options(UploadOptions {
            part_size: args.part_mib * 1024 * 1024,
            max_parts_in_flight: args.concurrency,
        });
        if args.encrypt {
            let key = Identities::generate();
            repo = repo.with_encryption(Encryption::new(key.recipients())?);
        }
        let started = Instant::now();
        let reader = tokio::fs::File::open(file).await?;
        let mut writer = repo.begin_backup(BackupKind::EtcdSnapshot, &name).await?;
        writer
            .put_artifact(&ArtifactName::new("payload.bin")?, reader)
            .await?;
        writer.commit(Default::default(), None).await?;
        anyhow::Ok(started.elapsed())
    })?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let vm_hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM not found in /proc/self/status")?;
    println!(
        "{}",
        serde_json::json!({ "secs": elapsed.as_secs_f64(), "vm_hwm_kib": vm_hwm_kib })
    );
    Ok(())
}
