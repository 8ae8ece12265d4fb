//! A real browser for the dashboard's tests and the controller benchmark: Debian's headless
//! Chromium driven through chromedriver's W3C WebDriver API (plain JSON over HTTP on 127.0.0.1),
//! so the page is tested as users meet it: forms, cookies, redirects, dialogs and the console.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Debian's Chromium and its driver (packages `chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser session; the driver (and its browser) stop when it drops.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// One HTTP/1.1 exchange with chromedriver (it refuses HTTP/1.0).
fn exchange(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )?;
    // chromedriver keeps the connection open: read the headers, then exactly the body.
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("chromedriver closed the connection before its headers ended");
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let mut body = response[split + 4..].to_vec();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    if chunked {
        body = dechunk(&body)?;
    }
    let value: Value = serde_json::from_slice(&body)
        .with_context(|| format!("chromedriver answered {path} with no JSON"))?;
    if let Some(error) = value["value"]["error"].as_str() {
        bail!(
            "chromedriver {method} {path}: {error}: {}",
            value["value"]["message"].as_str().unwrap_or_default()
        );
    }
    Ok(value["value"].clone())
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("short chunk")?);
        data = data.get(size + 2..).context("short chunk")?;
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    pub fn start() -> Result<Self> {
        Self::start_trusting(None)
    }

    /// [`Browser::start`], with Chromium trusting the public key whose SHA-256 is
    /// `spki_sha256` (base64; a server under test serves a [`LoopbackCertificate`] for
    /// 127.0.0.1): its pages are then HTTPS pages like any other.
    ///
    /// [`LoopbackCertificate`]: crate::http::LoopbackCertificate
    pub fn start_trusting(spki_sha256: Option<&str>) -> Result<Self> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).is_file() {
                bail!(
                    "{tool} is missing: `cargo xtask test` installs Debian's chromium and \
                     chromium-driver"
                );
            }
        }
        let port = crate::http::free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while exchange(addr, "GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on {addr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        if let Some(spki) = spki_sha256 {
            args.push(format!("--ignore-certificate-errors-spki-list={spki}"));
        }
        let created = exchange(
            addr,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": args,
                },
                "goog:loggingPrefs": {"browser": "ALL"},
                "unhandledPromptBehavior": "ignore",
            }}})),
        )?;
        browser.session = created["sessionId"]
            .as_str()
            .context("no session id")?
            .to_string();
        Ok(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        exchange(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", "/url", Some(json!({"url": url})))?;
        Ok(())
    }

    /// The current page's HTML.
    pub fn source(&self) -> Result<String> {
        Ok(self
            .call("GET", "/source", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The current URL.
    pub fn url(&self) -> Result<String> {
        Ok(self
            .call("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The first element matching CSS `selector`.
    pub fn find(&self, selector: &str) -> Result<String> {
        let found = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .with_context(|| format!("no element {selector}"))?;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("no element id")
    }

    /// Types `text` into element `id`.
    pub fn type_into(&self, id: &str, text: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )?;
        Ok(())
    }

    /// Clicks element `id`.
    pub fn click(&self, id: &str) -> Result<()> {
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))?;
        Ok(())
    }

    /// Clicks the element `selector` finds, finding it again while the page replaces it under
    /// the click (a page that reloads itself when a run starts or ends), for up to `within`:
    /// what a person does when a button moves as they click.
    pub fn click_on(&self, selector: &str, within: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let clicked = self.find(selector).and_then(|id| self.click(&id));
            match clicked {
                Ok(()) => return Ok(()),
                Err(e) if replaced(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The page's cookies as the browser holds them, HttpOnly ones too (`name`, `value`,
    /// `httpOnly`, `secure`, `sameSite`, `path`).
    pub fn cookies(&self) -> Result<Vec<Value>> {
        let cookies = self.call("GET", "/cookie", None)?;
        Ok(cookies.as_array().cloned().unwrap_or_default())
    }

    /// Accepts the open dialog (`confirm()`); its text.
    pub fn accept_dialog(&self) -> Result<String> {
        let text = self.call("GET", "/alert/text", None)?;
        self.call("POST", "/alert/accept", Some(json!({})))?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    /// Saves a PNG screenshot of the page to `path` (a test artifact).
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("no screenshot")?)
            .context("screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Runs `script` in the page.
    pub fn execute(&self, script: &str) -> Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Console messages of level SEVERE (errors) since the last call.
    pub fn console_errors(&self) -> Result<Vec<String>> {
        let logs = self.call("POST", "/se/log", Some(json!({"type": "browser"})))?;
        Ok(logs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["level"] == "SEVERE")
            .map(|l| l["message"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// Waits until the page's HTML contains `text` (after a click's navigation, say).
    pub fn wait_for_text(&self, text: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let source = self.source()?;
            if source.contains(text) {
                return Ok(source);
            }
            if Instant::now() > deadline {
                bail!("the page never showed {text:?}; last:\n{source}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the page's HTML contains `text`, reloading it every half second.
    pub fn reload_until_text(&self, text: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let source = self.source()?;
            if source.contains(text) {
                return Ok(source);
            }
            if Instant::now() > deadline {
                bail!("the page never showed {text:?}; last:\n{source}");
            }
            std::thread::sleep(Duration::from_millis(500));
            self.call("POST", "/refresh", Some(json!({})))?;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = exchange(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether a WebDriver error says the element went away with the page it was found on.
fn replaced(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    // Chromium says the third when the node it found was detached by a reload between the
    // find and the click.
    text.contains("stale element")
        || text.contains("no such element")
        || text.contains("does not belong to the document")
}
