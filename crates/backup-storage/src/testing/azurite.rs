//! Azure Blob Storage for tests: Azurite's blob service (`azurite-blob`, from npm) on 127.0.0.1,
//! reached through an ordinary `az://` location with Azurite's well-known development account.
//!
//! [`Azurite::start`] runs a private server per handle (killed when it drops), as
//! [`super::S3sFs`] does for S3; `cargo xtask env up` runs a long-lived one for the end-to-end
//! suites and uses [`create_container`] and [`location_options`] from here. The server is
//! installed by `cargo xtask test` / `cargo xtask env install` into [`install_dir`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::repository::Repository;

/// The Azurite release we install and test against.
pub const VERSION: &str = "3.37.0";
/// Azurite's development storage account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The published key of [`ACCOUNT`] (the same in every Azurite; not a secret).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The REST API version our own requests (container creation) declare.
const API_VERSION: &str = "2021-08-06";

/// Why Azurite could not be started or prepared.
#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    /// No `azurite-blob` (or no `node` to run it) was found.
    #[error(
        "{what} not found (looked at: {tried}); `cargo xtask env install` installs Azurite \
         {VERSION} (npm) and Node.js, or set AZURITE_BLOB_BIN"
    )]
    NotInstalled {
        /// `azurite-blob` or `node`.
        what: &'static str,
        /// The places looked at.
        tried: String,
    },
    /// Filesystem, process or socket error.
    #[error("Azurite ({context}): {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited or did not answer in time.
    #[error("Azurite did not become ready on 127.0.0.1:{port}: {reason}; its log: {log}")]
    NotReady {
        /// The port it was told to use.
        port: u16,
        /// What happened.
        reason: String,
        /// The server's output.
        log: String,
    },
    /// Azurite answered a request with an unexpected status.
    #[error("Azurite refused {request}: HTTP {status}: {body}")]
    Refused {
        /// The request, e.g. `PUT /devstoreaccount1/backups?restype=container`.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The response body (Azure's XML error).
        body: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AzuriteError {
    let context = context.into();
    move |source| AzuriteError::Io { context, source }
}

/// Where `cargo xtask` installs Azurite: `~/.cache/backup-fleet/azurite-<VERSION>` (an npm
/// prefix; the server is `node_modules/.bin/azurite-blob` in it).
pub fn install_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/backup-fleet")
        .join(format!("azurite-{VERSION}"))
}

/// `azurite-blob`: `$AZURITE_BLOB_BIN`, then [`install_dir`]'s, then each `$PATH` entry.
pub fn find_binary() -> Result<PathBuf, AzuriteError> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("AZURITE_BLOB_BIN") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(install_dir().join("node_modules/.bin/azurite-blob"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("azurite-blob")));
    }
    first_file("azurite-blob", candidates)
}

/// The `node` that runs Azurite: each `$PATH` entry, then `/usr/bin/node`.
pub fn find_node() -> Result<PathBuf, AzuriteError> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("node")).collect())
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/bin/node"));
    first_file("node", candidates)
}

fn first_file(what: &'static str, candidates: Vec<PathBuf>) -> Result<PathBuf, AzuriteError> {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| AzuriteError::NotInstalled {
            what,
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The arguments after `node <azurite-blob>`: blob service only, on 127.0.0.1:`port`, data in
/// `location`, any API version accepted (object_store may speak a newer one than this Azurite
/// knows), no telemetry (Azurite would otherwise send usage data out).
pub fn server_args(port: u16, location: &Path) -> Vec<String> {
    vec![
        "--blobHost".into(),
        "127.0.0.1".into(),
        "--blobPort".into(),
        port.to_string(),
        "--location".into(),
        location.display().to_string(),
        "--skipApiVersionCheck".into(),
        "--disableTelemetry".into(),
        "--silent".into(),
    ]
}

/// The blob endpoint of the development account on `port`: `http://127.0.0.1:<port>/devstoreaccount1`.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}/{ACCOUNT}")
}

/// The options of an `az://` location on the server at `endpoint`, as a user writes them:
/// the account (Velero's `storageAccount`), its key and the endpoint (whose `http://` allows
/// plain HTTP).
pub fn location_options(endpoint: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("storageAccount".to_string(), ACCOUNT.to_string()),
        ("access_key".to_string(), ACCOUNT_KEY.to_string()),
        ("endpoint".to_string(), endpoint.to_string()),
    ])
}

/// Creates `container` on the server at `endpoint` (from [`endpoint`]); one that exists is fine.
/// A Shared Key signed `PUT ?restype=container`, since object_store cannot create containers.
pub fn create_container(endpoint: &str, container: &str) -> Result<(), AzuriteError> {
    let rest = endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let (authority, account_path) = rest.split_once('/').unwrap_or((rest, ACCOUNT));
    let path = format!("/{account_path}/{container}");
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    // Shared Key string to sign: verb, eleven empty standard headers (Content-Length is empty
    // when 0), the x-ms- headers, the canonical resource (account, then the request path).
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{ACCOUNT}{path}\nrestype:container"
    );
    let key = base64_decode(ACCOUNT_KEY).expect("the published Azurite key is base64");
    let signature = base64_encode(&hmac_sha256(&key, to_sign.as_bytes()));
    let request_line = format!("PUT {path}?restype=container");
    let request = format!(
        "{request_line} HTTP/1.1\r\nHost: {authority}\r\nx-ms-date: {date}\r\n\
         x-ms-version: {API_VERSION}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut stream =
        TcpStream::connect(authority).map_err(io(format!("connecting to {authority}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io("setting a read timeout"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(io("sending the container request"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(io("reading the container response"))?;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // 201 Created, or 409 ContainerAlreadyExists.
    if status == 201 || (status == 409 && text.contains("ContainerAlreadyExists")) {
        return Ok(());
    }
    Err(AzuriteError::Refused {
        request: request_line,
        status,
        body: text
            .split_once("\r\n\r\n")
            .map_or(&*text, |(_, body)| body)
            .to_string(),
    })
}

/// A running Azurite blob service on a free 127.0.0.1 port, with a temporary data directory.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts the server and waits until it answers HTTP.
    pub fn start() -> Result<Self, AzuriteError> {
        let binary = find_binary()?;
        let node = find_node()?;
        let dir = tempfile::Builder::new()
            .prefix("azurite-")
            .tempdir()
            .map_err(io("creating a temporary directory"))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(io("creating the data directory"))?;
        let log = std::fs::File::create(dir.path().join("azurite.log"))
            .map_err(io("creating the log"))?;
        let log_err = log.try_clone().map_err(io("duplicating the log handle"))?;
        let port = super::free_port().map_err(|e| AzuriteError::Io {
            context: "finding a free port".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let child = Command::new(&node)
            .arg(&binary)
            .args(server_args(port, &data))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io(format!(
                "spawning {} {}",
                node.display(),
                binary.display()
            )))?;
        let mut server = Self { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), AzuriteError> {
        let deadline = Instant::now() + super::START_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("it exited with {status}")));
            }
            if answers_http(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!(
                    "no HTTP answer within {} s",
                    super::START_WITHIN.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn not_ready(&self, reason: String) -> AzuriteError {
        AzuriteError::NotReady {
            port: self.port,
            reason,
            log: std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default(),
        }
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        endpoint(self.port)
    }

    /// Location options for this server (see [`location_options`]).
    pub fn options(&self) -> BTreeMap<String, String> {
        location_options(&self.endpoint())
    }

    /// Creates a container (see [`create_container`]).
    pub fn create_container(&self, container: &str) -> Result<(), AzuriteError> {
        create_container(&self.endpoint(), container)
    }

    /// Opens `az://<container>/<prefix>` on this server (the container is not created).
    pub fn repository(&self, container: &str, prefix: &str) -> Result<Repository, StorageError> {
        Repository::open(&format!("az://{container}/{prefix}"), &self.options())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something on 127.0.0.1:`port` answers an HTTP request (Azurite answers 403 to an
/// unsigned one once it serves).
pub fn answers_http(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /{ACCOUNT}?comp=list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
}

/// HMAC-SHA256 (RFC 2104), for Shared Key signatures.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = BASE64.iter().position(|b| *b == c)? as u32;
        acc = acc << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn base64_round_trips_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode(ACCOUNT_KEY).unwrap().len(), 64);
        assert!(base64_decode("not base64!").is_none());
    }
}
