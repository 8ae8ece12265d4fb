//! Loopback HTTP and ports: a free port to serve on, and minimal requests to the admin and API
//! servers of processes started on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// A free TCP port on 127.0.0.1 (bound and released at once).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A minimal HTTP/1.0 GET on loopback (the admin server), returning status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let (code, body) = http_request(addr, "GET", path, None, None)?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// One HTTP/1.0 request (so the body ends with the connection, never chunked), with a bearer
/// `token` and a JSON `body` when given: the status code and the body's bytes.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    exchange(&mut stream, addr, method, path, token, body)
}

/// [`http_request`] over TLS, trusting only the certificate `trusted` (PEM) for 127.0.0.1.
pub fn https_request(
    addr: SocketAddr,
    trusted: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(trusted.as_bytes()) {
        roots.add(cert.context("a certificate to trust")?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    exchange(&mut stream, addr, method, path, token, body)
}

/// A self-signed certificate for 127.0.0.1 in PEM files, for a server under test; the PEM
/// is also what a client trusts it by.
pub struct LoopbackCertificate {
    /// Holds the files.
    _dir: tempfile::TempDir,
    /// The certificate (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
    /// The certificate's PEM text.
    pub pem: String,
    /// The SHA-256 of its public key (base64), as Chromium's
    /// `--ignore-certificate-errors-spki-list` takes it.
    pub spki_sha256: String,
}

impl LoopbackCertificate {
    /// A new one.
    pub fn new() -> Result<Self> {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
        let dir = tempfile::tempdir()?;
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let pem = made.cert.pem();
        std::fs::write(&cert, &pem)?;
        std::fs::write(&key, made.signing_key.serialize_pem())?;
        use base64::Engine;
        use rcgen::PublicKeyData;
        use sha2::Digest;
        let spki = sha2::Sha256::digest(made.signing_key.subject_public_key_info());
        Ok(LoopbackCertificate {
            _dir: dir,
            cert,
            key,
            pem,
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
        })
    }
}

/// Writes the request and reads the whole answer: its status code and body.
fn exchange(
    stream: &mut (impl Read + Write),
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>)> {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if body.is_some() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A TLS server that closes without close_notify: what was read is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    Ok((code, response[split + 4..].to_vec()))
}
