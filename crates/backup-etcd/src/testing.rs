//! Test support (feature `testing`): a real etcd on 127.0.0.1 and a throw-away PKI.
//!
//! Shared by this crate's tests, the CLI's tests and `cargo xtask bench etcd`, so all of them
//! exercise a real etcd. The server is killed when its handle drops, also while a panic unwinds.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::connect::{EtcdConnection, TlsFiles, member_status};
use crate::rpc::{
    self, Certificate, Channel, ClientTlsConfig, Identity, KvClient, PutRequest, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, request_op,
};

/// Why a test server or PKI could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Filesystem or process error.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// etcd exited or did not answer in time.
    #[error("etcd did not become ready on {endpoint}: {reason}; its log:\n{log}")]
    NotReady {
        /// Its client URL.
        endpoint: String,
        /// What happened.
        reason: String,
        /// Its output.
        log: String,
    },
    /// `openssl` failed.
    #[error("`openssl {args}` failed: {output}")]
    OpenSsl {
        /// Its arguments.
        args: String,
        /// Its output.
        output: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let context = context.into();
    move |source| LaunchError::Io { context, source }
}

/// A free TCP port on 127.0.0.1 (free when asked; another process could take it later).
pub fn free_port() -> std::io::Result<u16> {
    Ok(
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}

/// CA, server and client certificates for 127.0.0.1, made with the `openssl` CLI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate (SAN IP:127.0.0.1) and key.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (clientAuth) and key.
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), LaunchError> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(io("running openssl (install the openssl CLI)"))?;
    if !output.status.success() {
        return Err(LaunchError::OpenSsl {
            args: args.join(" "),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

impl TestPki {
    /// Creates `<prefix>ca.crt`, `server.{crt,key}` and `client.{crt,key}` in `dir`, all
    /// P-256, valid for two days. Different prefixes give unrelated CAs.
    pub fn generate(dir: &Path, prefix: &str) -> Result<Self, LaunchError> {
        let p = |name: &str| format!("{prefix}{name}");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=backup-test-ca"];
        args.extend(ec);
        let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
        args.extend(["-keyout", &ca_key, "-out", &ca_crt]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &args)?;
        for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let (key, csr, crt, ext) = (
                p(&format!("{who}.key")),
                p(&format!("{who}.csr")),
                p(&format!("{who}.crt")),
                p(&format!("{who}.ext")),
            );
            let mut req = vec!["req", "-subj", "/CN=127.0.0.1"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr]);
            openssl(dir, &req)?;
            std::fs::write(
                dir.join(&ext),
                format!(
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                     extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1\n"
                ),
            )
            .map_err(io("writing the extension file"))?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_crt,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &crt,
                    "-extfile",
                    &ext,
                ],
            )?;
        }
        Ok(Self {
            ca: dir.join(p("ca.crt")),
            server_cert: dir.join(p("server.crt")),
            server_key: dir.join(p("server.key")),
            client_cert: dir.join(p("client.crt")),
            client_key: dir.join(p("client.key")),
        })
    }

    /// The client side's files.
    pub fn client_files(&self) -> TlsFiles {
        TlsFiles {
            ca: Some(self.ca.clone()),
            cert: Some(self.client_cert.clone()),
            key: Some(self.client_key.clone()),
        }
    }
}

/// How to start a test etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Member name (`default` if unset).
    pub name: Option<String>,
    /// Existing data dir (e.g. a restored one); a fresh temp dir if unset.
    pub data_dir: Option<PathBuf>,
    /// Peer port (free one if unset); must match what a restored member was told.
    pub peer_port: Option<u16>,
    /// Serve https with client-cert auth using this PKI.
    pub tls: Option<TestPki>,
}

/// A running etcd on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    endpoint: String,
    tls: Option<TestPki>,
    data_dir: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    /// A fresh single-member etcd over plain http.
    pub async fn start() -> Result<Self, LaunchError> {
        Self::start_with(EtcdConfig::default()).await
    }

    /// Starts `/usr/bin/etcd` (or `$ETCD_BIN`) and waits until it answers a status call.
    pub async fn start_with(config: EtcdConfig) -> Result<Self, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-test-")
            .tempdir()
            .map_err(io("creating a temporary directory"))?;
        let data_dir = config
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let name = config.name.clone().unwrap_or_else(|| "default".into());
        let client_port = free_port().map_err(io("finding a free port"))?;
        let peer_port = match config.peer_port {
            Some(p) => p,
            None => free_port().map_err(io("finding a free port"))?,
        };
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let out = std::fs::File::create(&log).map_err(io("creating the log"))?;
        let err = out.try_clone().map_err(io("duplicating the log"))?;
        let binary = std::env::var_os("ETCD_BIN").unwrap_or_else(|| "/usr/bin/etcd".into());
        let mut command = Command::new(&binary);
        command
            .arg(format!("--name={name}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={name}={peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(pki) = &config.tls {
            command
                .arg("--cert-file")
                .arg(&pki.server_cert)
                .arg("--key-file")
                .arg(&pki.server_key)
                .arg("--trusted-ca-file")
                .arg(&pki.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .spawn()
            .map_err(io(format!("spawning {}", PathBuf::from(&binary).display())))?;
        let mut server = Self {
            child,
            endpoint,
            tls: config.tls,
            data_dir,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("it exited with {status}")));
            }
            if member_status(&self.connection()).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready("no status answer within 30 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn not_ready(&self, reason: String) -> LaunchError {
        LaunchError::NotReady {
            endpoint: self.endpoint.clone(),
            reason,
            log: std::fs::read_to_string(&self.log).unwrap_or_default(),
        }
    }

    /// Its process id (benchmarks read the server's CPU time from it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its client URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A connection with the client TLS files when it serves https.
    pub fn connection(&self) -> EtcdConnection {
        EtcdConnection {
            endpoints: vec![self.endpoint.clone()],
            tls: self
                .tls
                .as_ref()
                .map(TestPki::client_files)
                .unwrap_or_default(),
            tls_pem: None,
            addresses: None,
        }
    }

    /// A connected key-value client for writing and reading test data.
    pub async fn client(&self) -> Result<TestClient, tonic::transport::Error> {
        let tls = self.tls.as_ref().map(|pki| {
            let read = |p: &Path| std::fs::read(p).unwrap_or_default();
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&pki.ca)))
                .identity(Identity::from_pem(
                    read(&pki.client_cert),
                    read(&pki.client_key),
                ))
        });
        let channel = rpc::connect(&self.endpoint, tls, Duration::from_secs(5), None).await?;
        Ok(TestClient {
            kv: KvClient::new(channel),
        })
    }

    /// Kills it now (same as dropping) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The key-value calls tests and benches fill and read a store with.
pub struct TestClient {
    kv: KvClient<Channel>,
}

impl TestClient {
    /// Writes one key.
    pub async fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), tonic::Status> {
        self.put_all([(key.into(), value.into())]).await
    }

    /// Writes every pair in one transaction (etcd allows 128 operations per transaction by
    /// default).
    pub async fn put_all(
        &mut self,
        pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), tonic::Status> {
        let success = pairs
            .into_iter()
            .map(|(key, value)| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key,
                    value,
                    lease: 0,
                })),
            })
            .collect();
        self.kv
            .txn(TxnRequest {
                success,
                failure: Vec::new(),
            })
            .await?;
        Ok(())
    }

    /// The value of `key`, if it exists.
    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let page = self.range(key.into(), Vec::new(), 1, 0).await?;
        Ok(page.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Keys from `key` up to (not including) `range_end`, at most `limit` of them (0: all), at
    /// `revision` (0: the newest).
    pub async fn range(
        &mut self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: i64,
        revision: i64,
    ) -> Result<RangeResponse, tonic::Status> {
        let request = RangeRequest {
            key,
            range_end,
            limit,
            revision,
        };
        Ok(self.kv.range(request).await?.into_inner())
    }
}
