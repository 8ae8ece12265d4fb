//! Health probes over HTTP(S) on 127.0.0.1, done with the `curl` CLI (TLS verified against our
//! CA; proxies ignored).

use std::path::Path;
use std::process::Command;

/// The HTTP status of `GET url` (0 when nothing answered), verifying TLS with `ca` and sending
/// `token` as a bearer token when given.
pub fn status(url: &str, ca: Option<&Path>, token: Option<&str>) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "3",
    ])
    .args(["--noproxy", "*"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(token) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    cmd.arg(url);
    match cmd.output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Whether `GET url` answers 200.
pub fn ok(url: &str, ca: Option<&Path>, token: Option<&str>) -> bool {
    status(url, ca, token) == 200
}
