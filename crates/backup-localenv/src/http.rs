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
    stream.read_to_end(&mut response)?;
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
