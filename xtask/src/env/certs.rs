//! Key material for the environment, made with the `openssl` CLI: a CA, one serving certificate
//! for 127.0.0.1 (SAN `IP:127.0.0.1`, `DNS:localhost`) used by every apiserver and
//! controller-manager so clients can verify them, and the service-account signing key pair.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Paths of the generated files (all under `DIR/pki`).
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate clients trust.
    pub ca_cert: PathBuf,
    /// Serving certificate for 127.0.0.1.
    pub serving_cert: PathBuf,
    /// Its private key.
    pub serving_key: PathBuf,
    /// Service-account signing key (private).
    pub sa_key: PathBuf,
    /// Service-account verification key (public).
    pub sa_pub: PathBuf,
}

impl Pki {
    /// The file layout under `dir`.
    pub fn at(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        }
    }
}

/// Generates a fresh CA, serving certificate and service-account keys in `dir`.
pub fn generate(dir: &Path) -> Result<Pki> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pki = Pki::at(dir);
    let ca_key = dir.join("ca.key");
    let csr = dir.join("serving.csr");
    let ext = dir.join("serving.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    let p = |path: &Path| path.to_string_lossy().into_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=backup-fleet local CA",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&pki.ca_cert),
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&pki.serving_key),
        "-out",
        &p(&csr),
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-days",
        "3650",
        "-set_serial",
        "2",
        "-in",
        &p(&csr),
        "-CA",
        &p(&pki.ca_cert),
        "-CAkey",
        &p(&ca_key),
        "-extfile",
        &p(&ext),
        "-out",
        &p(&pki.serving_cert),
    ])?;
    openssl(&["genrsa", "-out", &p(&pki.sa_key), "2048"])?;
    openssl(&[
        "rsa",
        "-in",
        &p(&pki.sa_key),
        "-pubout",
        "-out",
        &p(&pki.sa_pub),
    ])?;
    for tmp in [csr, ext] {
        std::fs::remove_file(tmp)?;
    }
    Ok(pki)
}

/// A random lowercase hex string of `bytes` bytes from the kernel's CSPRNG.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `openssl ARGS`, failing with its output.
fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (Debian package `openssl`)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
