//! The webhook's TLS: a certificate (the chart's, from PEM files, or one made at start for a
//! controller run outside a cluster), and a listener whose handshakes run apart from accepting,
//! so a client that never finishes its handshake holds up no one else's admission.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
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

    /// The certificate chain and key in PEM files (a chart's Secret or cert-manager's), and
    /// the CA to trust them by.
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} holds no PEM certificates", cert.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(key)?)
            .with_context(|| format!("{} holds no PEM private key", key.display()))?;
        let ca_pem = String::from_utf8(read(ca)?)
            .with_context(|| format!("{} is not PEM text", ca.display()))?;
        Ok(Identity { chain, key, ca_pem })
    }

    fn server_config(self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)
            .context("the webhook's certificate and key do not fit together")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// TLS connections ready for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and handshakes with `identity`, each connection in a task of its own.
    pub fn start(tcp: TcpListener, identity: Identity) -> Result<Self> {
        let local = tcp.local_addr().context("the webhook listener's address")?;
        let acceptor = TlsAcceptor::from(identity.server_config()?);
        let (sender, ready) = mpsc::channel(WAITING);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a webhook connection failed");
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
