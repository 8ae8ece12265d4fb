//! Test support (feature `testing`): runs a real S3 server, `s3s-fs`, on 127.0.0.1, and
//! ([`azurite`]) Azure's blob emulator.
//!
//! Shared by this crate's conformance suite and `cargo xtask bench storage`, so both exercise
//! the same real HTTP/S3 path instead of a mock. The server is killed when the handle drops,
//! including during a panic's unwinding.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::StorageError;
use crate::repository::Repository;

pub mod azurite;

/// How long a test server may take to answer after it is spawned. A healthy start takes about
/// a second; a 2-core machine running a CI run beside a fresh-machine check took Node (Azurite)
/// over 30 s. This only bounds a start that hangs, so it is generous.
pub const START_WITHIN: Duration = Duration::from_secs(120);

/// How to install the server; quoted in every "not found" error.
pub const INSTALL_HINT: &str = "cargo install s3s-fs@0.14.1 --features binary --locked";

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No `s3s-fs` binary was found.
    #[error(
        "s3s-fs binary not found (looked at: {tried}); install it with `{INSTALL_HINT}` or set S3S_FS_BIN"
    )]
    NotInstalled {
        /// The places looked at.
        tried: String,
    },
    /// Filesystem or process error while preparing or spawning.
    #[error("could not start s3s-fs ({context}): {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited or did not accept connections in time.
    #[error("s3s-fs did not become ready on 127.0.0.1:{port}: {reason}; its log: {log}")]
    NotReady {
        /// The port it was told to use.
        port: u16,
        /// What happened.
        reason: String,
        /// The server's output.
        log: String,
    },
}

/// A running s3s-fs on 127.0.0.1 with a temporary root directory (each bucket is a directory).
#[derive(Debug)]
pub struct S3sFs {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// Access key the server is started with.
pub const ACCESS_KEY: &str = "bench-access-key";
/// Secret key the server is started with.
pub const SECRET_KEY: &str = "bench-secret-key";

/// Finds the `s3s-fs` binary: `$S3S_FS_BIN`, `~/.cargo/bin/s3s-fs`, then each `$PATH` entry.
pub fn find_binary() -> Result<PathBuf, LaunchError> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(home).join("bin/s3s-fs"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/s3s-fs"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("s3s-fs")));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| LaunchError::NotInstalled {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn free_port() -> Result<u16, LaunchError> {
    let listener =
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).map_err(|source| {
            LaunchError::Io {
                context: "finding a free port on 127.0.0.1".into(),
                source,
            }
        })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| LaunchError::Io {
            context: "reading the free port".into(),
            source,
        })
}

impl S3sFs {
    /// Starts the server on a free 127.0.0.1 port and waits until it accepts connections.
    pub fn start() -> Result<Self, LaunchError> {
        let io = |context: &str| {
            let context = context.to_string();
            move |source| LaunchError::Io { context, source }
        };
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("s3s-fs-")
            .tempdir()
            .map_err(io("creating a temporary root"))?;
        let root = dir.path().join("data");
        std::fs::create_dir(&root).map_err(io("creating the data directory"))?;
        let log =
            std::fs::File::create(dir.path().join("s3s-fs.log")).map_err(io("creating the log"))?;
        let log_err = log.try_clone().map_err(io("duplicating the log handle"))?;
        let port = free_port()?;
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io(&format!("spawning {}", binary.display())))?;
        let mut server = Self { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + START_WITHIN;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port).into();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("it exited with {status}")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!(
                    "no connection accepted within {} s",
                    START_WITHIN.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_ready(&self, reason: String) -> LaunchError {
        LaunchError::NotReady {
            port: self.port,
            reason,
            log: std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default(),
        }
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's data root; a bucket is a directory in it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates a bucket (a directory under the root).
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<PathBuf> {
        let path = self.root().join(bucket);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// Velero-style location options pointing at this server with the right credentials.
    pub fn options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("s3Url".to_string(), self.endpoint()),
            ("region".to_string(), "us-east-1".to_string()),
            ("s3ForcePathStyle".to_string(), "true".to_string()),
            ("access_key_id".to_string(), ACCESS_KEY.to_string()),
            ("secret_access_key".to_string(), SECRET_KEY.to_string()),
        ])
    }

    /// Opens `s3://<bucket>/<prefix>` on this server (the bucket is not created).
    pub fn repository(&self, bucket: &str, prefix: &str) -> Result<Repository, StorageError> {
        Repository::open(&format!("s3://{bucket}/{prefix}"), &self.options())
    }

    /// The directory that holds the log and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
