//! TLS for the admission webhook and the dashboard: a certificate made at start (outside a
//! chart), or PEM files read again when they change (a chart's Secret that cert-manager
//! renews: no restart needed), and a listener whose handshakes run apart from accepting, so a
//! client that never finishes its handshake holds up no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Handshaken connections waiting to be served.
const WAITING: usize = 64;

/// A certificate chain and its key, DER.
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The PEM to trust it by (the `caBundle`): the certificate itself when self-signed.
    pub ca_pem: String,
}

impl Identity {
    /// A new self-signed certificate for `host` (an IP address or a DNS name), valid for the
    /// life of the process: it is made at every start and registered with its URL.
    pub fn self_signed(host: &str) -> Result<Self> {
        let made = rcgen::generate_simple_self_signed(vec![host.to_string()])
            .with_context(|| format!("making a self-signed certificate for {host}"))?;
        Ok(Identity {
            ca_pem: made.cert.pem(),
            chain: vec![made.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into(),
        })
    }

    /// The CA to trust a certificate by, from a PEM file (the `caBundle` to register).
    pub fn ca_from_file(ca: &Path) -> Result<String> {
        let bytes = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        String::from_utf8(bytes).with_context(|| format!("{} is not PEM text", ca.display()))
    }

    /// A server configuration serving this certificate.
    pub fn server_config(self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = provider();
        let key = CertifiedKey::from_der(self.chain, self.key, &provider)
            .context("the certificate and key do not fit together")?;
        server_config(provider, Arc::new(Fixed(Arc::new(key))))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One certificate for good.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// How often the files of a [`Reloading`] certificate are looked at (at a handshake).
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// A certificate chain and key in PEM files, read again when their modification times
/// change; a pair that does not load (half written, mismatched) is logged and the previous
/// one kept.
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Loaded>,
}

struct Loaded {
    checked: Instant,
    stamps: [Option<SystemTime>; 2],
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Reloading {
    /// The server configuration serving the PEM files `cert` and `key`, as they are now and
    /// as they will be; an error now names the file to fix.
    pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
        let provider = provider();
        let stamps = stamps(cert, key);
        let loaded = load(cert, key, &provider)?;
        let resolver = Reloading {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider: provider.clone(),
            current: Mutex::new(Loaded {
                checked: Instant::now(),
                stamps,
                key: Arc::new(loaded),
            }),
        };
        server_config(provider, Arc::new(resolver))
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= RECHECK_EVERY {
            current.checked = Instant::now();
            let now = stamps(&self.cert, &self.key);
            if now != current.stamps {
                match load(&self.cert, &self.key, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert.display(), "serving the renewed certificate");
                        current.key = Arc::new(key);
                        current.stamps = now;
                    }
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "the certificate files changed but do not load; serving the previous one"
                    ),
                }
            }
        }
        Some(current.key.clone())
    }
}

fn stamps(cert: &Path, key: &Path) -> [Option<SystemTime>; 2] {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    [modified(cert), modified(key)]
}

/// The chain and key in PEM files, checked to fit together.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds no PEM certificates", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificates",
        cert.display()
    );
    let private = PrivateKeyDer::from_pem_slice(&read(key)?)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!(
            "the certificate {} and the key {} do not fit together",
            cert.display(),
            key.display()
        )
    })
}

/// TLS connections ready for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and handshakes with `config`, each connection in a task of its own.
    pub fn start(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Result<Self> {
        let local = tcp.local_addr().context("the listener's address")?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(WAITING);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a TLS connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if sender.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ends only with the listener: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a new self-signed certificate for 127.0.0.1 into `cert` and `key`; its PEM.
    fn write_certificate(cert: &Path, key: &Path) -> String {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(cert, made.cert.pem()).unwrap();
        std::fs::write(key, made.signing_key.serialize_pem()).unwrap();
        made.cert.pem()
    }

    /// Whether a client trusting only `pem` completes a handshake with `addr`.
    async fn trusted(addr: SocketAddr, pem: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::from(addr.ip());
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = write_certificate(&cert, &key);
        let config = Reloading::server_config(&cert, &key).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let _listener = TlsListener::start(tcp, config).unwrap();
        assert!(trusted(addr, &first).await);

        // Renewed (as cert-manager does): served after the next look at the files.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = write_certificate(&cert, &key);
        tokio::time::sleep(RECHECK_EVERY + Duration::from_millis(200)).await;
        assert!(trusted(addr, &second).await, "the renewed certificate");
        assert!(!trusted(addr, &first).await, "the old one is gone");

        // Half written: the previous one stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        tokio::time::sleep(RECHECK_EVERY + Duration::from_millis(200)).await;
        assert!(
            trusted(addr, &second).await,
            "kept while the files are broken"
        );
    }

    #[test]
    fn files_that_do_not_fit_together_are_refused_at_start_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        write_certificate(&cert, &key);
        let other_key = dir.path().join("b.key");
        write_certificate(&dir.path().join("b.crt"), &other_key);
        let err = Reloading::server_config(&cert, &other_key).unwrap_err();
        assert!(
            format!("{err:#}").contains("do not fit together"),
            "{err:#}"
        );
        let err = Reloading::server_config(&dir.path().join("absent"), &key).unwrap_err();
        assert!(format!("{err:#}").contains("absent"), "{err:#}");
    }
}
