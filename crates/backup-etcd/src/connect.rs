//! Connecting to one etcd member: endpoint parsing, TLS files, and telling "down" apart from
//! "not etcd" and "TLS refused", so the operator knows which of the three to fix.
//!
//! A snapshot must come from one member (its revision, member id and database belong together),
//! so endpoints are tried in order and the first member that answers a `Status` call is used,
//! as `etcdctl snapshot save` insists on a single endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backup_net::AddressPolicy;

use crate::error::{EtcdError, Result};
use crate::rpc::{
    self, Certificate, Channel, ClientTlsConfig, Identity, MaintenanceClient, StatusRequest,
};

/// How long a TCP connect or the first status call may take before the member counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS material for an etcd that serves `https://` client URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed etcd's server certificate (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for etcd started with `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any TLS file was given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// TLS material held in memory (read from a Kubernetes Secret, say), PEM; the same as
/// [`TlsFiles`] without the files.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsPem {
    /// CA bundle that signed etcd's server certificate.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and its private key, both or neither.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsPem {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl TlsPem {
    fn options(&self) -> ClientTlsConfig {
        let mut options = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            options = options.ca_certificate(Certificate::from_pem(ca.clone()));
        }
        if let Some((cert, key)) = &self.identity {
            options = options.identity(Identity::from_pem(cert.clone(), key.clone()));
        }
        options
    }
}

/// Where and how to reach etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConnection {
    /// Client URLs (`http://host:2379`, `https://host:2379`), tried in order.
    pub endpoints: Vec<String>,
    /// TLS files; `https://` endpoints without a CA use the system roots.
    pub tls: TlsFiles,
    /// TLS material in memory; used instead of `tls` when set.
    pub tls_pem: Option<TlsPem>,
    /// When the endpoints are a project's (the controller), every address dialled is checked
    /// against this policy, after DNS; `None` (an operator's own command line) dials anything.
    pub addresses: Option<Arc<AddressPolicy>>,
}

/// What etcd said about itself right before the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The endpoint that answered.
    pub endpoint: String,
    /// The member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The store's revision when the status was read.
    pub revision: i64,
    /// Size of the backend database in bytes, as etcd reports it.
    pub db_size: i64,
    /// etcd's version.
    pub version: String,
}

/// A connected member.
pub(crate) struct Member {
    pub client: MaintenanceClient<Channel>,
    pub status: MemberStatus,
}

fn read_tls_file(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Builds rustls options from the files, failing early (before any connection) on unreadable
/// or half-given files.
fn tls_options(tls: &TlsFiles) -> Result<Option<ClientTlsConfig>> {
    if tls.is_empty() {
        return Ok(None);
    }
    let mut options = ClientTlsConfig::new();
    if let Some(ca) = &tls.ca {
        let pem = read_tls_file("CA certificate", ca)?;
        options = options.ca_certificate(Certificate::from_pem(pem));
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let cert = read_tls_file("client certificate", cert)?;
            let key = read_tls_file("client key", key)?;
            options = options.identity(Identity::from_pem(cert, key));
        }
        (Some(_), None) => {
            return Err(EtcdError::IncompleteClientIdentity {
                given: "certificate",
            });
        }
        (None, Some(_)) => return Err(EtcdError::IncompleteClientIdentity { given: "key" }),
        (None, None) => {}
    }
    Ok(Some(options))
}

/// Splits `scheme://host:port[/]` into host:port, rejecting anything else.
fn host_port(endpoint: &str) -> Result<(bool, String)> {
    let invalid = |reason: &str| EtcdError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let (https, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(invalid("it must start with http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(invalid("it must be scheme://host:port without a path"));
    }
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(invalid("it needs a host and a numeric port"));
    }
    Ok((https, authority.to_string()))
}

/// Whether a transport error looks like a TLS failure (rustls/tonic only expose it as text).
fn looks_like_tls(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "tls",
        "certificate",
        "handshake",
        "alert",
        "unknownissuer",
        "ssl",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Connects to one endpoint and reads its status.
async fn connect_one(
    endpoint: &str,
    tls_options: Option<ClientTlsConfig>,
    addresses: Option<&Arc<AddressPolicy>>,
) -> Result<Member> {
    let (https, authority) = host_port(endpoint)?;
    let dialled = match addresses {
        Some(policy) => checked_addresses(endpoint, &authority, policy).await?,
        None => Vec::new(),
    };
    // Plain TCP first: separates "nothing listens" from "something else listens".
    let tcp = async {
        match addresses {
            Some(_) => tokio::net::TcpStream::connect(&dialled[..]).await,
            None => tokio::net::TcpStream::connect(&authority).await,
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, tcp).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(EtcdError::Unreachable {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(EtcdError::Unreachable {
                endpoint: endpoint.to_string(),
                reason: format!("no TCP connection within {CONNECT_TIMEOUT:?}"),
            });
        }
    }
    let uses_tls = https || tls_options.is_some();
    let url = if uses_tls && !https {
        format!("https://{authority}")
    } else {
        endpoint.trim_end_matches('/').to_string()
    };
    let tls = uses_tls.then(|| tls_options.unwrap_or_default());
    let failed = |e: String| {
        if uses_tls && looks_like_tls(&e) {
            EtcdError::Tls {
                endpoint: endpoint.to_string(),
                reason: e,
            }
        } else {
            EtcdError::NotEtcd {
                endpoint: endpoint.to_string(),
                reason: e,
            }
        }
    };
    let attempt = async {
        let channel = rpc::connect(&url, tls, CONNECT_TIMEOUT, addresses.cloned())
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let mut client = MaintenanceClient::new(channel);
        let status = client
            .status(StatusRequest {})
            .await
            .map_err(|e| failed(status_summary(&e)))?
            .into_inner();
        let header = status.header.ok_or_else(|| {
            failed("its status response has no header (not an etcd v3 server?)".to_string())
        })?;
        let status = MemberStatus {
            endpoint: endpoint.to_string(),
            member_id: header.member_id,
            cluster_id: header.cluster_id,
            revision: header.revision,
            db_size: status.db_size,
            version: status.version,
        };
        Ok(Member { client, status })
    };
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
        Ok(result) => result,
        Err(_) => Err(failed(format!(
            "no etcd status answer within {:?}",
            CONNECT_TIMEOUT * 2
        ))),
    }
}

/// The addresses `authority` (`host:port`) resolves to, each allowed by `policy`; a refusal
/// names the endpoint.
async fn checked_addresses(
    endpoint: &str,
    authority: &str,
    policy: &Arc<AddressPolicy>,
) -> Result<Vec<std::net::SocketAddr>> {
    let (host, port) = authority
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| EtcdError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: "it needs a host and a numeric port".into(),
        })?;
    let resolver = backup_net::GuardedResolver::new(Arc::clone(policy));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match resolver.resolve(host).await {
        Ok(found) => Ok(found
            .into_iter()
            .map(|mut a| {
                a.set_port(port);
                a
            })
            .collect()),
        Err(e) => match backup_net::denied_in(&e) {
            Some(denied) => Err(EtcdError::AddressNotAllowed {
                endpoint: endpoint.to_string(),
                denied: denied.clone(),
            }),
            None => Err(EtcdError::Unreachable {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            }),
        },
    }
}

/// What a gRPC peer answered, in fixed words: its status code. The message is the peer's own
/// text, and the peer is whatever the endpoint names, so it is never repeated.
pub(crate) fn status_summary(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
            // tonic reports transport failures (TLS, refused streams) with these codes and its
            // own description as the source; a peer's message is not a source.
            let mut text = format!("gRPC status {:?}", status.code());
            if let Some(source) = std::error::Error::source(status) {
                text.push_str(": ");
                text.push_str(&error_chain(source));
            }
            text
        }
        code => format!("gRPC status {code:?}"),
    }
}

/// An error with its sources, since tonic hides the useful part (e.g. the TLS alert) in them.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

/// Connects to the first endpoint that answers as etcd; lists every failure otherwise.
pub(crate) async fn connect(connection: &EtcdConnection) -> Result<Member> {
    if connection.endpoints.is_empty() {
        return Err(EtcdError::NoEndpoints);
    }
    // Bad local input is the same for every endpoint: reported at once, before connecting.
    let tls = match &connection.tls_pem {
        Some(pem) => Some(pem.options()),
        None => tls_options(&connection.tls)?,
    };
    let mut failures = Vec::new();
    for endpoint in &connection.endpoints {
        match connect_one(endpoint.trim(), tls.clone(), connection.addresses.as_ref()).await {
            Ok(member) => return Ok(member),
            Err(e) => failures.push(e),
        }
    }
    if failures.len() == 1 {
        return Err(failures.remove(0));
    }
    Err(EtcdError::AllEndpointsFailed { failures })
}

/// Reads a member's status; public for callers that only want to check reachability.
pub async fn member_status(connection: &EtcdConnection) -> Result<MemberStatus> {
    Ok(connect(connection).await?.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_scheme_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:2379").unwrap(),
            (false, "127.0.0.1:2379".to_string())
        );
        assert_eq!(
            host_port("https://etcd:2379/").unwrap(),
            (true, "etcd:2379".to_string())
        );
        for bad in [
            "127.0.0.1:2379",
            "http://",
            "http://host",
            "http://h:99999",
            "http://h:1/x",
        ] {
            let err = host_port(bad).unwrap_err();
            assert!(matches!(err, EtcdError::InvalidEndpoint { .. }), "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn half_a_client_identity_is_refused_before_connecting() {
        let tls = TlsFiles {
            cert: Some("/nonexistent/cert.pem".into()),
            ..TlsFiles::default()
        };
        let err = tls_options(&tls).unwrap_err();
        assert!(err.to_string().contains("--key"), "{err}");
    }
}
