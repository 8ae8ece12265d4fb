//! The one place that turns a kubeconfig into a kube [`Client`]: from bytes (a kubeconfig kept in
//! a Kubernetes Secret, as the controller reads them), from a file (`backupctl --kubeconfig`), or
//! from the default places (`$KUBECONFIG`, `~/.kube/config`, then the in-cluster configuration).
//!
//! Two rules hold for every function here:
//! - **Errors never show the kubeconfig's contents.** A kubeconfig carries tokens and private
//!   keys, and the messages end up in logs and status conditions. The parsers' own messages quote
//!   the input (YAML snippets, mistyped values), so they are never passed on: errors say what is
//!   wrong, where (file, context, line and column) and nothing of the data.
//! - **A kubeconfig given as bytes must be self-contained.** It comes from someone else's Secret;
//!   letting it name local files (a CA, a token file, a client key) or run commands (exec and
//!   auth-provider plugins) would let its author read the controller's files — its own service
//!   account token included — or run code on its host. Such kubeconfigs are refused.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_net::AddressPolicy;
use kube::Client;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig, LoadDataError, NamedContext};

/// Where a kubeconfig came from, as error messages name it (never its contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigOrigin {
    /// Bytes handed over by the caller, e.g. from a Secret.
    Data,
    /// One file.
    File(PathBuf),
    /// Several files merged, as listed in `$KUBECONFIG`.
    Files(Vec<PathBuf>),
    /// No kubeconfig at all: the in-cluster configuration of a pod.
    InCluster,
}

impl fmt::Display for KubeconfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data => f.write_str("the kubeconfig data"),
            Self::File(path) => write!(f, "kubeconfig {}", path.display()),
            Self::Files(paths) => {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "the kubeconfig merged from {} ($KUBECONFIG)",
                    list.join(", ")
                )
            }
            Self::InCluster => f.write_str("the in-cluster configuration"),
        }
    }
}

/// Why no client could be made from a kubeconfig. Every message names the kubeconfig (file or
/// "data") and, once known, the context; none contains the kubeconfig's contents.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The kubeconfig file could not be read.
    #[error("cannot read kubeconfig {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The bytes are not a kubeconfig: not UTF-8, not YAML, or fields of the wrong type.
    #[error("{origin} is not a valid kubeconfig: {reason} (contents not shown)")]
    Parse {
        /// The kubeconfig.
        origin: KubeconfigOrigin,
        /// What is wrong and where (line and column), without quoting the input.
        reason: String,
    },
    /// The requested context does not exist, or none was requested and no current-context is
    /// set.
    #[error("{origin} {}", describe_context_problem(.wanted.as_deref(), .available))]
    Context {
        /// The kubeconfig.
        origin: KubeconfigOrigin,
        /// The context looked for (the requested one, else the current-context); `None` when
        /// neither names one.
        wanted: Option<String>,
        /// The contexts the kubeconfig does have, sorted.
        available: Vec<String>,
    },
    /// A kubeconfig given as data refers to local files or runs commands.
    #[error(
        "context {context:?} of {origin} {uses}; a kubeconfig given as data must be \
         self-contained (certificate-authority-data, token or client-certificate-data and \
         client-key-data), never reading files or running commands"
    )]
    NotSelfContained {
        /// The kubeconfig.
        origin: KubeconfigOrigin,
        /// The context that was selected.
        context: String,
        /// What it would use, e.g. "reads its certificate authority from a file".
        uses: &'static str,
    },
    /// kube could not make a configuration of the context: a missing cluster or server, an
    /// unreadable CA or client certificate, undecodable data, unsupported authentication.
    #[error("cannot use context {context:?} of {origin}: {reason}")]
    Config {
        /// The kubeconfig.
        origin: KubeconfigOrigin,
        /// The context that was selected.
        context: String,
        /// What is wrong, without the kubeconfig's data.
        reason: String,
    },
    /// The configuration was understood but no client could be built from it (TLS set-up).
    #[error("cannot build a Kubernetes client for context {context:?} of {origin}: {reason}")]
    Client {
        /// The kubeconfig.
        origin: KubeconfigOrigin,
        /// The context that was selected.
        context: String,
        /// What is wrong, without the kubeconfig's data.
        reason: String,
    },
    /// The API server named by a kubeconfig given as data is an address projects may not
    /// reach (link-local, a metadata service, the platform's own networks).
    #[error(
        "the `server` of context {context:?} of {origin}: {denied}; name the cluster's API \
         server by an address outside the link-local and metadata ranges and the platform's own \
         networks"
    )]
    AddressNotAllowed {
        /// The kubeconfig.
        origin: KubeconfigOrigin,
        /// The context that was selected.
        context: String,
        /// The refusal.
        denied: Box<backup_net::AddressDenied>,
    },
    /// No kubeconfig exists and this process does not run in a pod either.
    #[error(
        "no kubeconfig ($KUBECONFIG is unset and ~/.kube/config does not exist) and no \
         in-cluster configuration: {reason}"
    )]
    InCluster {
        /// Why the in-cluster configuration could not be used.
        reason: String,
    },
}

/// The end of the message of [`KubeconfigError::Context`].
fn describe_context_problem(wanted: Option<&str>, available: &[String]) -> String {
    let list = if available.is_empty() {
        "it has no contexts".to_owned()
    } else {
        let quoted: Vec<String> = available.iter().map(|c| format!("{c:?}")).collect();
        format!("its contexts: {}", quoted.join(", "))
    };
    match wanted {
        Some(name) => format!("has no context {name:?} ({list})"),
        None => format!("sets no current-context; name a context ({list})"),
    }
}

/// A client for `context` (default: the current context) of the kubeconfig in `kubeconfig`,
/// which must be self-contained: see the [module documentation](self). Every connection it
/// makes is checked against `addresses` (see [`backup_net`]).
pub async fn client_from_bytes(
    kubeconfig: &[u8],
    context: Option<&str>,
    addresses: Arc<AddressPolicy>,
) -> Result<Client, KubeconfigError> {
    Ok(cluster_client_from_bytes(kubeconfig, context, addresses)
        .await?
        .client)
}

/// A client for a user cluster and which API server it talks to.
pub struct ClusterClient {
    /// The client.
    pub client: Client,
    /// The API server: its URL and the certificate authority trusted for it. Two kubeconfigs
    /// with the same `server` address the same API server from here, whoever's credentials
    /// they hold, so what every authenticated user may read of it (its discovery documents)
    /// can be shared between them; kubectl keys its discovery cache by the server too.
    pub server: String,
}

/// [`client_from_bytes`], also naming the API server (see [`ClusterClient::server`]).
pub async fn cluster_client_from_bytes(
    kubeconfig: &[u8],
    context: Option<&str>,
    addresses: Arc<AddressPolicy>,
) -> Result<ClusterClient, KubeconfigError> {
    let origin = KubeconfigOrigin::Data;
    let text = std::str::from_utf8(kubeconfig).map_err(|e| KubeconfigError::Parse {
        origin: origin.clone(),
        reason: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
    })?;
    let parsed = Kubeconfig::from_yaml(text).map_err(|e| describe_load_error(&origin, e))?;
    let (name, selected) = select_context(&parsed, context, &origin)?;
    ensure_self_contained(&parsed, selected, &name, &origin)?;
    let config = config_from_kubeconfig(parsed, &name, &origin).await?;
    if let Some(Err(denied)) = config.cluster_url.host().map(|h| addresses.check_host(h)) {
        return Err(KubeconfigError::AddressNotAllowed {
            origin,
            context: name,
            denied: Box::new(denied),
        });
    }
    let server = server_key(&config);
    let client =
        guarded_client(config, addresses).map_err(|e| classify_client_error(e, origin, name))?;
    Ok(ClusterClient { client, server })
}

/// kube's client for `config`, built as `Client::try_from` builds it (timeouts, base URI,
/// authentication, extra headers), except that it connects through
/// [`backup_net::guarded_http_connector`], so every address it dials (after DNS, on every
/// connection) is checked against `addresses`, and that it never uses a proxy (a kubeconfig
/// given as data may not name one, see [`ensure_self_contained`]).
fn guarded_client(config: kube::Config, addresses: Arc<AddressPolicy>) -> kube::Result<Client> {
    use kube::client::ConfigExt;
    // kube installs the process's TLS provider the same way before building its own clients.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let https = config
        .rustls_https_connector_with_connector(backup_net::guarded_http_connector(addresses))?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http = hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}

/// [`ClusterClient::server`] of `config`: its URL, and a digest of each trusted CA certificate.
fn server_key(config: &kube::Config) -> String {
    let mut server = config.cluster_url.to_string();
    for cert in config.root_cert.iter().flatten() {
        server.push('#');
        server.push_str(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert)));
    }
    server
}

/// A client for `context` (default: the current context) of the kubeconfig file at `path`.
/// Relative file references inside it are resolved against the file's directory, as kubectl
/// does; exec plugins run, as they do for kubectl.
pub async fn client_from_file(
    path: &Path,
    context: Option<&str>,
) -> Result<Client, KubeconfigError> {
    let origin = KubeconfigOrigin::File(path.to_path_buf());
    let parsed = read_file(path)?;
    let (name, _) = select_context(&parsed, context, &origin)?;
    client_from_kubeconfig(parsed, name, origin).await
}

/// A client from the default places, as `kubectl` and kube's `Config::infer` look: the files
/// in `$KUBECONFIG` (merged), else `~/.kube/config`; when neither exists, the in-cluster
/// configuration of a pod (its service account). Unlike `Config::infer`, a kubeconfig that
/// exists but is broken is reported, not silently replaced by the in-cluster configuration.
pub async fn client_from_default(context: Option<&str>) -> Result<Client, KubeconfigError> {
    let paths = default_kubeconfig_paths();
    let Some(first) = paths.first() else {
        return client_in_cluster(context);
    };
    let origin = match paths.as_slice() {
        [only] => KubeconfigOrigin::File(only.clone()),
        _ => KubeconfigOrigin::Files(paths.clone()),
    };
    let mut merged = read_file(first)?;
    for path in &paths[1..] {
        merged = merged
            .merge(read_file(path)?)
            .map_err(|e| describe_load_error(&origin, e))?;
    }
    let (name, _) = select_context(&merged, context, &origin)?;
    client_from_kubeconfig(merged, name, origin).await
}

/// The kubeconfig files to use when none is named: `$KUBECONFIG`'s entries when it lists any,
/// else `~/.kube/config` when it exists; empty when there is no kubeconfig.
fn default_kubeconfig_paths() -> Vec<PathBuf> {
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let listed: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !listed.is_empty() {
            return listed;
        }
    }
    std::env::home_dir()
        .map(|home| home.join(".kube").join("config"))
        .filter(|path| path.exists())
        .into_iter()
        .collect()
}

/// The in-cluster configuration, used when no kubeconfig exists.
fn client_in_cluster(context: Option<&str>) -> Result<Client, KubeconfigError> {
    if let Some(name) = context {
        return Err(KubeconfigError::Context {
            origin: KubeconfigOrigin::InCluster,
            wanted: Some(name.to_owned()),
            available: Vec::new(),
        });
    }
    let mut config = kube::Config::incluster().map_err(|e| KubeconfigError::InCluster {
        // Environment variables and mounted file paths only; never the token itself.
        reason: e.to_string(),
    })?;
    config.apply_debug_overrides();
    Client::try_from(config)
        .map_err(|e| classify_client_error(e, KubeconfigOrigin::InCluster, "in-cluster".to_owned()))
}

/// Reads and parses one kubeconfig file (kube resolves its relative paths).
fn read_file(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
    Kubeconfig::read_from(path).map_err(|e| match e {
        kube::config::KubeconfigError::ReadConfig(error, _) => KubeconfigError::Read {
            path: path.to_path_buf(),
            error,
        },
        other => describe_load_error(&KubeconfigOrigin::File(path.to_path_buf()), other),
    })
}

/// The context to use: `wanted`, else the current context; with its definition.
fn select_context<'k>(
    kubeconfig: &'k Kubeconfig,
    wanted: Option<&str>,
    origin: &KubeconfigOrigin,
) -> Result<(String, &'k NamedContext), KubeconfigError> {
    let name = wanted
        .or(kubeconfig.current_context.as_deref())
        .filter(|name| !name.is_empty());
    let found = name.and_then(|name| {
        kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == name && c.context.is_some())
    });
    match (name, found) {
        (Some(name), Some(context)) => Ok((name.to_owned(), context)),
        _ => {
            let mut available: Vec<String> =
                kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
            available.sort();
            Err(KubeconfigError::Context {
                origin: origin.clone(),
                wanted: name.map(str::to_owned),
                available,
            })
        }
    }
}

/// Refuses a kubeconfig whose selected cluster or user would read local files or run commands.
/// Inline data wins over a file reference in kube (as in client-go), so a path next to its
/// `-data` field is harmless; plugins are refused whenever present.
fn ensure_self_contained(
    kubeconfig: &Kubeconfig,
    selected: &NamedContext,
    name: &str,
    origin: &KubeconfigOrigin,
) -> Result<(), KubeconfigError> {
    let refuse = |uses| {
        Err(KubeconfigError::NotSelfContained {
            origin: origin.clone(),
            context: name.to_owned(),
            uses,
        })
    };
    let Some(context) = &selected.context else {
        return Ok(());
    };
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref());
    if cluster.is_some_and(|c| c.proxy_url.is_some()) {
        return refuse("connects through a proxy (`proxy-url`)");
    }
    if let Some(cluster) = cluster
        && cluster.certificate_authority.is_some()
        && cluster.certificate_authority_data.is_none()
    {
        return refuse("reads its certificate authority from a file");
    }
    let user: Option<&AuthInfo> = context.user.as_ref().and_then(|user| {
        kubeconfig
            .auth_infos
            .iter()
            .find(|u| &u.name == user)
            .and_then(|u| u.auth_info.as_ref())
    });
    let Some(user) = user else {
        return Ok(());
    };
    if user.exec.is_some() {
        return refuse("runs an exec credential plugin");
    }
    if user.auth_provider.is_some() {
        return refuse("uses an auth-provider plugin");
    }
    if user.token_file.is_some() && user.token.is_none() {
        return refuse("reads its token from a file");
    }
    if user.client_certificate.is_some() && user.client_certificate_data.is_none() {
        return refuse("reads its client certificate from a file");
    }
    if user.client_key.is_some() && user.client_key_data.is_none() {
        return refuse("reads its client key from a file");
    }
    Ok(())
}

/// kube's configuration and client for context `name`, with errors described safely.
async fn client_from_kubeconfig(
    kubeconfig: Kubeconfig,
    name: String,
    origin: KubeconfigOrigin,
) -> Result<Client, KubeconfigError> {
    let config = config_from_kubeconfig(kubeconfig, &name, &origin).await?;
    Client::try_from(config).map_err(|e| classify_client_error(e, origin, name))
}

/// The client configuration of context `name`.
async fn config_from_kubeconfig(
    kubeconfig: Kubeconfig,
    name: &str,
    origin: &KubeconfigOrigin,
) -> Result<kube::Config, KubeconfigError> {
    let options = KubeConfigOptions {
        context: Some(name.to_owned()),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| KubeconfigError::Config {
            origin: origin.clone(),
            context: name.to_owned(),
            reason: describe_config_error(&e),
        })
}

/// Turns a failure to read or parse a kubeconfig into [`KubeconfigError::Parse`] (or the
/// closest variant), keeping only the position of a YAML error.
fn describe_load_error(
    origin: &KubeconfigOrigin,
    error: kube::config::KubeconfigError,
) -> KubeconfigError {
    use kube::config::KubeconfigError as Kube;
    let reason = match &error {
        // The parser's message quotes the input (a snippet, a mistyped value): position only.
        Kube::Parse(yaml) => match yaml.location() {
            Some(at) => format!(
                "invalid YAML or a field of the wrong type at line {}, column {}",
                at.line(),
                at.column()
            ),
            None => "invalid YAML or a field of the wrong type".to_owned(),
        },
        other => describe_config_error(other),
    };
    KubeconfigError::Parse {
        origin: origin.clone(),
        reason,
    }
}

/// What is wrong, for one of kube's kubeconfig errors, in words that carry no kubeconfig data:
/// names of contexts and clusters and paths of files are kept, values (URLs that may hold
/// credentials, base64 data, YAML snippets) are not.
fn describe_config_error(error: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as Kube;
    match error {
        Kube::CurrentContextNotSet => "no current-context is set".to_owned(),
        Kube::KindMismatch => "its documents disagree on `kind`".to_owned(),
        Kube::ApiVersionMismatch => "its documents disagree on `apiVersion`".to_owned(),
        Kube::LoadContext(name) => format!("it has no context {name:?}"),
        Kube::LoadClusterOfContext(name) => {
            format!("the context refers to cluster {name:?}, which is not defined")
        }
        Kube::FindPath => "the home directory, and so ~/.kube/config, is unknown".to_owned(),
        Kube::ReadConfig(error, path) => format!("cannot read {}: {error}", path.display()),
        Kube::Parse(_) => "invalid YAML or a field of the wrong type".to_owned(),
        Kube::MissingClusterUrl => "its cluster has no `server`".to_owned(),
        Kube::ParseClusterUrl(_) => "its cluster's `server` is not a valid URL".to_owned(),
        Kube::ParseProxyUrl(_) => "its cluster's `proxy-url` is not a valid URL".to_owned(),
        Kube::LoadCertificateAuthority(e) => describe_data_error("certificate-authority", e),
        Kube::LoadClientCertificate(e) => describe_data_error("client-certificate", e),
        Kube::LoadClientKey(e) => describe_data_error("client-key", e),
        Kube::ParseCertificates(_) => {
            "its certificate authority holds no valid PEM certificate".to_owned()
        }
        // Variants that only exist with kube features this workspace does not enable (proxies).
        #[allow(unreachable_patterns)]
        _ => "kube rejected it".to_owned(),
    }
}

/// One unloadable `<field>` / `<field>-data` pair.
fn describe_data_error(field: &str, error: &LoadDataError) -> String {
    match error {
        LoadDataError::DecodeBase64(_) => format!("`{field}-data` is not valid base64"),
        LoadDataError::ReadFile(error, path) => {
            format!("cannot read its {field} file {}: {error}", path.display())
        }
        LoadDataError::NoBase64DataOrFile => {
            format!("neither `{field}` nor `{field}-data` is set")
        }
    }
}

/// Sorts a failure of `Client::try_from`: authentication and kubeconfig data problems are
/// [`KubeconfigError::Config`], the rest (TLS set-up) [`KubeconfigError::Client`].
fn classify_client_error(
    error: kube::Error,
    origin: KubeconfigOrigin,
    context: String,
) -> KubeconfigError {
    use kube::client::{AuthError, RustlsTlsError};
    let config = |reason: String| KubeconfigError::Config {
        origin: origin.clone(),
        context: context.clone(),
        reason,
    };
    let client = |reason: String| KubeconfigError::Client {
        origin: origin.clone(),
        context: context.clone(),
        reason,
    };
    match &error {
        kube::Error::InferKubeconfig(e) => config(describe_config_error(e)),
        kube::Error::Auth(auth) => config(match auth {
            AuthError::InvalidBasicAuth(_) => {
                "its username or password is not a valid HTTP header value".to_owned()
            }
            AuthError::InvalidBearerToken(_) => {
                "its token is not a valid HTTP header value (a stray newline?)".to_owned()
            }
            AuthError::AuthExecStart(e) => format!("cannot start its exec plugin: {e}"),
            AuthError::AuthExecRun { cmd, out } => format!(
                "its exec plugin {cmd:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            AuthError::AuthExecParse(_) | AuthError::ParseTokenKey(_) => {
                "its exec plugin's output is not a valid ExecCredential".to_owned()
            }
            AuthError::ReadTokenFile(e, path) => {
                format!("cannot read its token file {}: {e}", path.display())
            }
            // Fixed texts, or built from a plugin's name: nothing secret in them.
            AuthError::AuthExec(_)
            | AuthError::ExecPluginFailed
            | AuthError::MissingCommand
            | AuthError::ExecMissingClusterInfo
            | AuthError::UnrefreshableTokenResponse
            | AuthError::MalformedTokenExpirationDate(_)
            | AuthError::AuthExecSerialize(_)
            | AuthError::NoValidNativeRootCA(_) => auth.to_string(),
            // Variants of kube features this workspace does not enable (OAuth, OIDC).
            #[allow(unreachable_patterns)]
            _ => "its authentication could not be set up".to_owned(),
        }),
        kube::Error::RustlsTls(tls) => client(match tls {
            RustlsTlsError::InvalidIdentityPem(_) => {
                "its client certificate or key is not valid PEM".to_owned()
            }
            RustlsTlsError::InvalidPrivateKey(_) => {
                "its client key is not a usable private key".to_owned()
            }
            RustlsTlsError::AddRootCertificate(_) => {
                "its certificate authority is not a usable certificate".to_owned()
            }
            RustlsTlsError::MissingPrivateKey
            | RustlsTlsError::MissingCertificate
            | RustlsTlsError::UnknownPrivateKeyFormat
            | RustlsTlsError::NoValidNativeRootCA(_)
            | RustlsTlsError::InvalidServerName(_) => tls.to_string(),
        }),
        kube::Error::ProxyProtocolUnsupported { .. }
        | kube::Error::ProxyProtocolDisabled { .. } => {
            client("its `proxy-url` uses a protocol this build does not support".to_owned())
        }
        kube::Error::TlsRequired => client(error.to_string()),
        _ => client("kube could not build a client from it".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token that must never appear in an error message.
    const SECRET: &str = "s3cr3t-t0ken-do-not-print";

    /// A self-contained kubeconfig with contexts `a` (current) and `b`; `extra_user` is spliced
    /// into user `u`.
    fn kubeconfig(current: Option<&str>, extra_user: &str) -> String {
        let current = current
            .map(|c| format!("current-context: {c}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1
kind: Config
{current}clusters:
- name: k
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
contexts:
- name: b
  context: {{cluster: k, user: u}}
- name: a
  context: {{cluster: k, user: u}}
users:
- name: u
  user:
    token: {SECRET}
{extra_user}"
        )
    }

    #[test]
    fn a_server_is_its_url_and_the_authorities_it_is_trusted_with() {
        let config = |url: &str, ca: Option<&[u8]>| {
            let mut config = kube::Config::new(url.parse().unwrap());
            config.root_cert = ca.map(|ca| vec![ca.to_vec()]);
            server_key(&config)
        };
        let one = config("https://10.0.0.1:6443", Some(b"ca-one"));
        assert_eq!(one, config("https://10.0.0.1:6443", Some(b"ca-one")));
        assert_ne!(one, config("https://10.0.0.1:6443", Some(b"ca-two")));
        assert_ne!(one, config("https://10.0.0.2:6443", Some(b"ca-one")));
        assert_ne!(one, config("https://10.0.0.1:6443", None));
    }

    async fn bytes_error(yaml: &str, context: Option<&str>) -> KubeconfigError {
        match client_from_bytes(yaml.as_bytes(), context, Default::default()).await {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                let message = e.to_string();
                assert!(!message.contains(SECRET), "leaks the token: {message}");
                e
            }
        }
    }

    #[tokio::test]
    async fn garbage_is_a_parse_error_that_quotes_nothing() {
        for garbage in [
            format!("{SECRET}: [unclosed"),
            format!("clusters: {SECRET}"),
            format!("users:\n- name: u\n  user:\n    token: [{SECRET}]\n"),
        ] {
            let e = bytes_error(&garbage, None).await;
            assert!(matches!(e, KubeconfigError::Parse { .. }), "{e}");
            assert!(e.to_string().contains("the kubeconfig data"), "{e}");
        }
        let e = match client_from_bytes(b"\xff\xfe kubeconfig", None, Default::default()).await {
            Err(e) => e,
            Ok(_) => panic!("non-UTF-8 accepted"),
        };
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_context_names_the_available_ones() {
        let e = bytes_error(&kubeconfig(Some("a"), ""), Some("nope")).await;
        assert!(matches!(e, KubeconfigError::Context { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "the kubeconfig data has no context \"nope\" (its contexts: \"a\", \"b\")"
        );
        // A current-context that names nothing is the same problem.
        let e = bytes_error(&kubeconfig(Some("gone"), ""), None).await;
        assert!(e.to_string().contains("\"gone\""), "{e}");
    }

    #[tokio::test]
    async fn no_current_context_asks_for_one() {
        let e = bytes_error(&kubeconfig(None, ""), None).await;
        assert_eq!(
            e.to_string(),
            "the kubeconfig data sets no current-context; name a context \
             (its contexts: \"a\", \"b\")"
        );
        let e = bytes_error("apiVersion: v1\nkind: Config\n", None).await;
        assert!(e.to_string().contains("it has no contexts"), "{e}");
    }

    #[tokio::test]
    async fn data_that_reads_files_or_runs_commands_is_refused() {
        for (extra, uses) in [
            (
                "    exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}\n",
                "exec",
            ),
            (
                "    client-key: /var/run/secrets/key.pem\n",
                "client key from a file",
            ),
            (
                "    auth-provider: {name: gcp, config: {cmd-path: /bin/sh}}\n",
                "auth-provider",
            ),
        ] {
            let e = bytes_error(&kubeconfig(Some("a"), extra), None).await;
            assert!(matches!(e, KubeconfigError::NotSelfContained { .. }), "{e}");
            assert!(e.to_string().contains(uses), "{e}");
            assert!(e.to_string().contains("context \"a\""), "{e}");
        }
        let with_ca_file = kubeconfig(Some("a"), "").replace(
            "insecure-skip-tls-verify: true",
            "certificate-authority: /etc/kubernetes/pki/ca.crt",
        );
        let e = bytes_error(&with_ca_file, None).await;
        assert!(
            e.to_string().contains("certificate authority from a file"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_proxy_or_a_metadata_server_is_refused() {
        let proxied = kubeconfig(Some("a"), "").replace(
            "insecure-skip-tls-verify: true",
            "insecure-skip-tls-verify: true\n    proxy-url: http://127.0.0.1:3128",
        );
        let e = bytes_error(&proxied, None).await;
        assert!(matches!(e, KubeconfigError::NotSelfContained { .. }), "{e}");
        assert!(e.to_string().contains("proxy-url"), "{e}");
        for server in ["https://169.254.169.254", "https://[fd00:ec2::254]:443"] {
            let yaml = kubeconfig(Some("a"), "").replace("https://127.0.0.1:1", server);
            let e = bytes_error(&yaml, None).await;
            assert!(
                matches!(e, KubeconfigError::AddressNotAllowed { .. }),
                "{e}"
            );
            assert!(e.to_string().contains("`server`"), "{e}");
            assert!(!e.to_string().contains(SECRET), "{e}");
        }
    }

    #[tokio::test]
    async fn every_connection_is_checked_after_dns() {
        use k8s_openapi::api::core::v1::Namespace;
        // Something listens on 127.0.0.1; the platform denies loopback; the kubeconfig names
        // it as `localhost`, so only the resolved address can refuse it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let yaml = kubeconfig(Some("a"), "")
            .replace("https://127.0.0.1:1", &format!("https://localhost:{port}"));
        let denied = Arc::new(AddressPolicy::with_denied(
            AddressPolicy::parse_cidrs("127.0.0.0/8,::1").unwrap(),
        ));
        let client = client_from_bytes(yaml.as_bytes(), None, denied)
            .await
            .unwrap();
        let err = kube::Api::<Namespace>::all(client)
            .list(&Default::default())
            .await
            .unwrap_err();
        assert!(
            backup_net::denied_in(&err).is_some(),
            "not refused by the address policy: {err:?}"
        );
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "the listener was reached"
        );
    }

    #[tokio::test]
    async fn undecodable_inline_data_is_a_config_error_without_the_data() {
        let yaml = kubeconfig(Some("a"), "").replace(
            "insecure-skip-tls-verify: true",
            &format!("certificate-authority-data: \"{SECRET}!\""),
        );
        let e = bytes_error(&yaml, None).await;
        assert!(matches!(e, KubeconfigError::Config { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "cannot use context \"a\" of the kubeconfig data: \
             `certificate-authority-data` is not valid base64"
        );
    }

    #[tokio::test]
    async fn a_self_contained_kubeconfig_makes_a_client_without_connecting() {
        let client = client_from_bytes(
            kubeconfig(Some("a"), "").as_bytes(),
            Some("b"),
            Default::default(),
        )
        .await;
        assert!(client.is_ok(), "{:?}", client.err());
    }

    #[tokio::test]
    async fn file_errors_name_the_file_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.kubeconfig");
        let e = client_from_file(&missing, None).await.err().unwrap();
        assert!(matches!(e, KubeconfigError::Read { .. }), "{e}");
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );

        // A relative CA path is resolved against the file's directory, and named when missing.
        let path = dir.path().join("config");
        let yaml = kubeconfig(Some("a"), "").replace(
            "insecure-skip-tls-verify: true",
            "certificate-authority: ca.crt",
        );
        std::fs::write(&path, yaml).unwrap();
        let e = client_from_file(&path, Some("b")).await.err().unwrap();
        let message = e.to_string();
        assert!(matches!(e, KubeconfigError::Config { .. }), "{e}");
        assert!(message.starts_with(&format!(
            "cannot use context \"b\" of kubeconfig {}: ",
            path.display()
        )));
        assert!(
            message.contains(&dir.path().join("ca.crt").display().to_string()),
            "{e}"
        );
        assert!(!message.contains(SECRET), "{message}");
    }
}
