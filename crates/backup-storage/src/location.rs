//! Opening a storage location from a URL plus the location's config map.
//!
//! One URL names the backend and the base prefix (`s3://bucket/prefix`, `file:///dir`, ...); the
//! options map carries what Velero keeps in a BackupStorageLocation's `config` (`region`, `s3Url`,
//! `s3ForcePathStyle`, `insecureSkipTLSVerify`, ...) or object_store's own keys. For S3, the
//! standard `AWS_*` environment variables give defaults and explicit options override them, so a
//! location works the same in a pod with injected credentials and on a laptop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use backup_core::{FILE_PROVIDER, StorageLocationSpec};

use crate::error::{Result, StorageError};
use crate::names::ScopeSegment;
use crate::tenancy::{GuardedConnector, Tenancy};

/// Which object store a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `file:///dir`: a local directory (the embedded default; created if missing).
    File(PathBuf),
    /// `memory://`: a fresh in-process store (tests and demos; every open is a new, empty store).
    Memory,
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
    },
    /// `gs://bucket/prefix`.
    Gcs {
        /// The bucket.
        bucket: String,
    },
    /// `az://container/prefix`.
    Azure {
        /// The container.
        container: String,
    },
}

/// A parsed location URL: backend plus base prefix, before any network is touched.
#[derive(Debug, Clone)]
pub struct Location {
    url: String,
    backend: Backend,
    prefix: Path,
}

/// Velero BSL config keys for AWS we understand, mapped to what they mean.
const VELERO_S3_KEYS: &str =
    "region, s3Url, s3ForcePathStyle, insecureSkipTLSVerify, serverSideEncryption, kmsKeyId";

impl Location {
    /// Parses `url`; fails with [`StorageError::UnsupportedScheme`] listing what is supported.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: &str| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        // Check the raw text: URL parsing would silently resolve `..` and decode `%2e%2e`.
        if url.contains('%') || url.split('/').any(|s| s == "." || s == "..") {
            return Err(invalid(
                "'.', '..' segments and percent-encoding are not allowed",
            ));
        }
        let parsed = Url::parse(url).map_err(|e| invalid(&format!("{e}")))?;
        let host = || {
            parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string)
        };
        let (backend, path) = match parsed.scheme() {
            "file" => {
                if host().is_some_and(|h| h != "localhost") {
                    return Err(invalid("file URLs must be local: use file:///absolute/dir"));
                }
                let dir = parsed.to_file_path().map_err(|()| {
                    invalid("not an absolute local path; use file:///absolute/dir")
                })?;
                (Backend::File(dir), String::new())
            }
            "memory" => (Backend::Memory, parsed.path().to_string()),
            "s3" | "s3a" => {
                let bucket =
                    host().ok_or_else(|| invalid("missing bucket: use s3://bucket/prefix"))?;
                (Backend::S3 { bucket }, parsed.path().to_string())
            }
            "gs" => {
                let bucket =
                    host().ok_or_else(|| invalid("missing bucket: use gs://bucket/prefix"))?;
                (Backend::Gcs { bucket }, parsed.path().to_string())
            }
            "az" | "azure" => {
                let container = host()
                    .ok_or_else(|| invalid("missing container: use az://container/prefix"))?;
                (Backend::Azure { container }, parsed.path().to_string())
            }
            other => {
                return Err(StorageError::UnsupportedScheme {
                    url: url.to_string(),
                    scheme: other.to_string(),
                });
            }
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                "query strings and fragments are not supported; put settings in the location's options",
            ));
        }
        let mut segments = Vec::new();
        for raw in path.split('/').filter(|s| !s.is_empty()) {
            let segment =
                ScopeSegment::new(raw).map_err(|e| invalid(&format!("prefix segment: {e}")))?;
            segments.push(segment);
        }
        let prefix = Path::from_iter(segments.iter().map(ScopeSegment::as_str));
        Ok(Self {
            url: url.to_string(),
            backend,
            prefix,
        })
    }

    /// A `file` location at `dir` (already judged acceptable by the caller).
    pub(crate) fn file(dir: PathBuf) -> Self {
        Self {
            url: format!("file://{}", dir.display()),
            backend: Backend::File(dir),
            prefix: Path::default(),
        }
    }

    /// The backend this URL selects.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The base prefix inside the bucket (empty for `file://`, whose directory is the root).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The location a Velero-style spec describes (`aws`, `gcp`, `azure` buckets, or a `file`
    /// directory), with the spec's prefix as base prefix. The spec must have been validated.
    pub fn from_spec(spec: &StorageLocationSpec) -> Result<Self> {
        let prefix_text = spec.prefix.as_deref().unwrap_or("").trim_matches('/');
        let mut segments = Vec::new();
        for raw in prefix_text.split('/').filter(|s| !s.is_empty()) {
            segments.push(
                ScopeSegment::new(raw).map_err(|e| StorageError::InvalidOption {
                    key: "prefix".into(),
                    reason: format!("prefix segment: {e}"),
                })?,
            );
        }
        let prefix = Path::from_iter(segments.iter().map(ScopeSegment::as_str));
        let bucket = spec.bucket.clone();
        let (backend, scheme) = match spec.provider.trim_start_matches("velero.io/") {
            FILE_PROVIDER => {
                let mut dir = PathBuf::from(&spec.bucket);
                dir.extend(segments.iter().map(ScopeSegment::as_str));
                let url = format!("file://{}", dir.display());
                return Ok(Self {
                    url,
                    backend: Backend::File(dir),
                    prefix: Path::default(),
                });
            }
            "aws" => (Backend::S3 { bucket }, "s3"),
            "gcp" => (Backend::Gcs { bucket }, "gs"),
            "azure" => (Backend::Azure { container: bucket }, "az"),
            other => {
                return Err(StorageError::UnsupportedProvider {
                    provider: other.to_string(),
                });
            }
        };
        let url = match prefix_text {
            "" => format!("{scheme}://{}", spec.bucket),
            p => format!("{scheme}://{}/{p}", spec.bucket),
        };
        Ok(Self {
            url,
            backend,
            prefix,
        })
    }

    /// The URL this location was parsed from or stands for.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Builds the store, confined to the base prefix, reading `AWS_*` etc. from the process
    /// environment for defaults.
    pub fn open(&self, options: &BTreeMap<String, String>) -> Result<Arc<dyn ObjectStore>> {
        self.open_with_env(options, |k| std::env::var(k).ok())
    }

    /// Like [`Location::open`] but with an explicit environment, so callers (and tests) need not
    /// mutate the process environment.
    pub fn open_with_env(
        &self,
        options: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn ObjectStore>> {
        self.open_with_ca(options, env, None)
    }

    /// Like [`Location::open_with_env`], additionally trusting the PEM certificates in
    /// `ca_bundle` (a location's `caCert`) for HTTPS endpoints.
    pub fn open_with_ca(
        &self,
        options: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
        ca_bundle: Option<&[u8]>,
    ) -> Result<Arc<dyn ObjectStore>> {
        self.build(options, ca_bundle, Some(&env), None)
    }

    /// Opens a project's location under `tenancy` (see [`crate::tenancy`]): `options` are the
    /// allowed keys, already mapped, plus those of the credential Secret. Without lent
    /// identity, no environment variable is read and every connection is guarded.
    pub(crate) fn open_for_project(
        &self,
        options: &BTreeMap<String, String>,
        ca_bundle: Option<&[u8]>,
        tenancy: &Tenancy,
    ) -> Result<Arc<dyn ObjectStore>> {
        if tenancy.lend_identity {
            let env = |k: &str| std::env::var(k).ok();
            return self.build(options, ca_bundle, Some(&env), None);
        }
        let guard = || GuardedConnector {
            policy: Arc::clone(&tenancy.addresses),
            ca_bundle: ca_bundle.map(<[u8]>::to_vec),
        };
        self.build(options, ca_bundle, None, Some(&guard))
    }

    /// Builds the store. `env`: the environment to take `AWS_*`, `GOOGLE_*` and `AZURE_*`
    /// defaults from (none: the options alone). `guard`: makes the HTTP connector every
    /// client of the store connects through (none: object_store's own).
    fn build(
        &self,
        options: &BTreeMap<String, String>,
        ca_bundle: Option<&[u8]>,
        env: Option<EnvLookup<'_>>,
        guard: Option<&dyn Fn() -> GuardedConnector>,
    ) -> Result<Arc<dyn ObjectStore>> {
        let mut client = client_options();
        if let Some(pem) = ca_bundle {
            let certificates = object_store::Certificate::from_pem_bundle(pem).map_err(|e| {
                StorageError::InvalidOption {
                    key: "caCert".into(),
                    reason: format!("the CA bundle cannot be read as PEM certificates: {e}"),
                }
            })?;
            for certificate in certificates {
                client = client.with_root_certificate(certificate);
            }
        }
        let configure = |source| StorageError::Configure {
            url: self.url.clone(),
            source,
        };
        let reject_options = || match options.keys().next() {
            Some(key) => Err(StorageError::InvalidOption {
                key: key.clone(),
                reason: "this location type takes no options; remove it".into(),
            }),
            None => Ok(()),
        };
        let store: Arc<dyn ObjectStore> = match &self.backend {
            Backend::File(dir) => {
                reject_options()?;
                std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(dir).map_err(configure)?;
                Arc::new(fs.with_automatic_cleanup(true))
            }
            Backend::Memory => {
                reject_options()?;
                Arc::new(InMemory::new())
            }
            Backend::S3 { bucket } => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_client_options(client.clone())
                    .with_retry(retry_config());
                if let Some(guard) = guard {
                    builder = builder.with_http_connector(guard());
                }
                for (key, value) in s3_config(options, |k| env.and_then(|env| env(k)))? {
                    builder = builder.with_config(key, value);
                }
                Arc::new(builder.build().map_err(configure)?)
            }
            Backend::Gcs { bucket } => {
                let mut builder = match env {
                    Some(_) => GoogleCloudStorageBuilder::from_env(),
                    None => GoogleCloudStorageBuilder::new(),
                }
                .with_bucket_name(bucket)
                .with_client_options(client.clone())
                .with_retry(retry_config());
                if let Some(guard) = guard {
                    builder = builder.with_http_connector(guard());
                }
                // Our client options replaced the ones from_env read (GOOGLE_PROXY_URL, ...).
                if env.is_some() {
                    for (key, value) in client_env(process_env(), "GOOGLE_", google_client_key) {
                        builder = builder.with_config(key, value);
                    }
                }
                for (key, value) in options {
                    let parsed =
                        GoogleConfigKey::from_str(&key.to_ascii_lowercase()).map_err(|_| {
                            unknown_option(
                                key,
                                "object_store's GCS keys (e.g. service_account_path)",
                            )
                        })?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build().map_err(configure)?)
            }
            Backend::Azure { container } => {
                let mut builder = match env {
                    Some(_) => MicrosoftAzureBuilder::from_env(),
                    None => MicrosoftAzureBuilder::new(),
                }
                .with_container_name(container)
                .with_client_options(client.clone())
                .with_retry(retry_config());
                if let Some(guard) = guard {
                    builder = builder.with_http_connector(guard());
                }
                // Our client options replaced the ones from_env read (AZURE_ALLOW_HTTP, ...).
                if env.is_some() {
                    for (key, value) in client_env(process_env(), "AZURE_", azure_client_key) {
                        builder = builder.with_config(key, value);
                    }
                }
                for (key, value) in azure_config(options)? {
                    builder = builder.with_config(key, value);
                }
                Arc::new(builder.build().map_err(configure)?)
            }
        };
        if self.prefix.as_ref().is_empty() {
            Ok(store)
        } else {
            Ok(Arc::new(PrefixStore::new(store, self.prefix.clone())))
        }
    }
}

/// Reads one environment variable (the process's, or a caller's stand-in).
type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn unknown_option(key: &str, accepted: &str) -> StorageError {
    StorageError::InvalidOption {
        key: key.to_string(),
        reason: format!("unknown option; accepted are {accepted}"),
    }
}

/// Short connect timeout and few retries: an unreachable endpoint must fail in seconds so the
/// user sees "unreachable" promptly instead of a request hanging for minutes.
fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(StorageError::InvalidOption {
            key: key.to_string(),
            reason: format!("`{value}` is not a boolean; use true or false"),
        }),
    }
}

/// Resolves S3 settings: `AWS_*` environment first, explicit options (Velero-style or
/// object_store keys) on top. Path-style addressing whenever an endpoint is given, unless
/// `s3ForcePathStyle: "false"` asks otherwise; `http://` endpoints imply `allow_http`.
pub(crate) fn s3_config(
    options: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(AmazonS3ConfigKey, String)>> {
    use AmazonS3ConfigKey as K;
    let mut config: BTreeMap<String, (AmazonS3ConfigKey, String)> = BTreeMap::new();
    fn set(
        config: &mut BTreeMap<String, (AmazonS3ConfigKey, String)>,
        key: AmazonS3ConfigKey,
        value: String,
    ) {
        config.insert(key.as_ref().to_string(), (key, value));
    }
    let first = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
    if let Some(v) = first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]) {
        set(&mut config, K::Endpoint, v);
    }
    if let Some(v) = first(&["AWS_REGION", "AWS_DEFAULT_REGION"]) {
        set(&mut config, K::Region, v);
    }
    let env_keys = [
        ("AWS_ACCESS_KEY_ID", K::AccessKeyId),
        ("AWS_SECRET_ACCESS_KEY", K::SecretAccessKey),
        ("AWS_SESSION_TOKEN", K::Token),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", K::WebIdentityTokenFile),
        ("AWS_ROLE_ARN", K::RoleArn),
        ("AWS_ROLE_SESSION_NAME", K::RoleSessionName),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            K::ContainerCredentialsRelativeUri,
        ),
    ];
    for (name, key) in env_keys {
        if let Some(v) = first(&[name]) {
            set(&mut config, key, v);
        }
    }
    if let Some(v) = first(&["AWS_ALLOW_HTTP"]) {
        set(
            &mut config,
            K::Client(ClientConfigKey::AllowHttp),
            parse_bool("AWS_ALLOW_HTTP", &v)?.to_string(),
        );
    }

    let mut path_style: Option<bool> = None;
    for (key, value) in options {
        match key.as_str() {
            "region" => set(&mut config, K::Region, value.clone()),
            "s3Url" => set(&mut config, K::Endpoint, value.clone()),
            "s3ForcePathStyle" => path_style = Some(parse_bool(key, value)?),
            "insecureSkipTLSVerify" => set(
                &mut config,
                K::Client(ClientConfigKey::AllowInvalidCertificates),
                parse_bool(key, value)?.to_string(),
            ),
            _ => {
                let name = match key.as_str() {
                    "serverSideEncryption" => "aws_server_side_encryption".to_string(),
                    "kmsKeyId" => "aws_sse_kms_key_id".to_string(),
                    other => other.to_ascii_lowercase(),
                };
                let parsed = AmazonS3ConfigKey::from_str(&name).map_err(|_| {
                    unknown_option(
                        key,
                        &format!("the Velero keys {VELERO_S3_KEYS} or object_store's S3 keys (e.g. endpoint, access_key_id, allow_http)"),
                    )
                })?;
                set(&mut config, parsed, value.clone());
            }
        }
    }

    let endpoint = config.get(K::Endpoint.as_ref()).map(|(_, v)| v.clone());
    if let Some(endpoint) = endpoint {
        let url = Url::parse(&endpoint).map_err(|e| StorageError::InvalidOption {
            key: "s3Url".into(),
            reason: format!(
                "endpoint `{endpoint}` is not a URL ({e}); use e.g. https://minio.example:9000"
            ),
        })?;
        let allow_http_key = K::Client(ClientConfigKey::AllowHttp);
        if url.scheme() == "http" && !config.contains_key(allow_http_key.as_ref()) {
            set(&mut config, allow_http_key, "true".into());
        }
        let virtual_hosted = !path_style.unwrap_or(true);
        set(
            &mut config,
            K::VirtualHostedStyleRequest,
            virtual_hosted.to_string(),
        );
    } else if let Some(force) = path_style {
        set(
            &mut config,
            K::VirtualHostedStyleRequest,
            (!force).to_string(),
        );
    }
    Ok(config.into_values().collect())
}

/// The variables among `vars` named `<prefix>...` that set HTTP client options
/// (`AZURE_ALLOW_HTTP`, `GOOGLE_PROXY_URL`, ...): the provider's `from_env` builder reads them
/// into client options, which ours replace, so they are given again through `client_key`
/// (which keeps a provider key only when it is a client key).
fn client_env<K: FromStr>(
    vars: impl Iterator<Item = (String, String)>,
    prefix: &str,
    client_key: impl Fn(K) -> Option<K>,
) -> Vec<(K, String)> {
    vars.filter(|(name, _)| name.starts_with(prefix))
        .filter_map(|(name, value)| {
            let key = K::from_str(&name.to_ascii_lowercase()).ok()?;
            Some((client_key(key)?, value))
        })
        .collect()
}

/// This process's environment, as UTF-8 pairs (others cannot name an option).
fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

fn azure_client_key(key: AzureConfigKey) -> Option<AzureConfigKey> {
    matches!(key, AzureConfigKey::Client(_)).then_some(key)
}

fn google_client_key(key: GoogleConfigKey) -> Option<GoogleConfigKey> {
    matches!(key, GoogleConfigKey::Client(_)).then_some(key)
}

/// Resolves Azure options: Velero's `storageAccount` or object_store's keys (`account_name`,
/// `access_key`, `endpoint`, ...). An `http://` endpoint (Azurite, or any blob endpoint without
/// TLS, e.g. `http://127.0.0.1:10000/devstoreaccount1`) implies `allow_http` unless that is
/// given, as for S3. `use_emulator` is refused together with `endpoint`, because object_store's
/// emulator mode ignores it and always dials 127.0.0.1:10000.
pub(crate) fn azure_config(
    options: &BTreeMap<String, String>,
) -> Result<Vec<(AzureConfigKey, String)>> {
    use AzureConfigKey as K;
    let mut config: BTreeMap<String, (AzureConfigKey, String)> = BTreeMap::new();
    for (key, value) in options {
        let name = match key.as_str() {
            "storageAccount" => "account_name".to_string(),
            other => other.to_ascii_lowercase(),
        };
        let parsed = AzureConfigKey::from_str(&name).map_err(|_| {
            unknown_option(
                key,
                "storageAccount or object_store's Azure keys (e.g. access_key, endpoint, allow_http)",
            )
        })?;
        config.insert(parsed.as_ref().to_string(), (parsed, value.clone()));
    }
    let value = |key: AzureConfigKey| config.get(key.as_ref()).map(|(_, v)| v.clone());
    let Some(endpoint) = value(K::Endpoint) else {
        return Ok(config.into_values().collect());
    };
    if let Some(emulator) = value(K::UseEmulator)
        && parse_bool("use_emulator", &emulator)?
    {
        return Err(StorageError::InvalidOption {
            key: "use_emulator".into(),
            reason: format!(
                "the emulator mode ignores endpoint `{endpoint}` and always uses \
                 http://127.0.0.1:10000; for an emulator elsewhere remove use_emulator and give \
                 the endpoint with the account (storageAccount, access_key)"
            ),
        });
    }
    let url = Url::parse(&endpoint).map_err(|e| StorageError::InvalidOption {
        key: "endpoint".into(),
        reason: format!(
            "`{endpoint}` is not a URL ({e}); use e.g. https://ACCOUNT.blob.core.windows.net"
        ),
    })?;
    let allow_http = K::Client(ClientConfigKey::AllowHttp);
    if url.scheme() == "http" && !config.contains_key(allow_http.as_ref()) {
        config.insert(allow_http.as_ref().to_string(), (allow_http, "true".into()));
    }
    Ok(config.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(config: &[(AmazonS3ConfigKey, String)], key: AmazonS3ConfigKey) -> Option<String> {
        config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn parses_supported_schemes() {
        let l = Location::parse("s3://bkt/kkp/backups").unwrap();
        assert_eq!(
            l.backend(),
            &Backend::S3 {
                bucket: "bkt".into()
            }
        );
        assert_eq!(l.prefix().as_ref(), "kkp/backups");
        let l = Location::parse("gs://g/p").unwrap();
        assert_eq!(l.backend(), &Backend::Gcs { bucket: "g".into() });
        let l = Location::parse("az://c/p").unwrap();
        assert_eq!(
            l.backend(),
            &Backend::Azure {
                container: "c".into()
            }
        );
        assert_eq!(
            Location::parse("memory://").unwrap().backend(),
            &Backend::Memory
        );
        let l = Location::parse("file:///var/lib/backups").unwrap();
        assert_eq!(l.backend(), &Backend::File("/var/lib/backups".into()));
    }

    #[test]
    fn unknown_scheme_lists_supported() {
        let err = Location::parse("ftp://x").unwrap_err();
        assert!(
            matches!(err, StorageError::UnsupportedScheme { ref scheme, .. } if scheme == "ftp")
        );
        let msg = err.to_string();
        for s in ["file://", "memory://", "s3://", "gs://", "az://"] {
            assert!(msg.contains(s), "{msg}");
        }
    }

    #[test]
    fn rejects_bad_urls_and_prefixes() {
        for bad in [
            "s3://",
            "s3://b/%2e%2e/x",
            "s3://b/a/../x?x=1",
            "not a url",
            "file://remote/dir",
        ] {
            let err = Location::parse(bad).unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn options_override_env_and_endpoint_means_path_style() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("https://env.example".to_string()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("envkey".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("envsecret".to_string()),
            _ => None,
        };
        let c = s3_config(&BTreeMap::new(), env).unwrap();
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("https://env.example")
        );
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("false")
        );

        let options = BTreeMap::from([
            ("s3Url".to_string(), "http://127.0.0.1:9000".to_string()),
            ("region".to_string(), "minio".to_string()),
            ("access_key_id".to_string(), "optkey".to_string()),
            ("insecureSkipTLSVerify".to_string(), "true".to_string()),
        ]);
        let c = s3_config(&options, env).unwrap();
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::Region).as_deref(),
            Some("minio")
        );
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("optkey")
        );
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::SecretAccessKey).as_deref(),
            Some("envsecret")
        );
        let allow_http = AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp);
        assert_eq!(lookup(&c, allow_http).as_deref(), Some("true"));
        let insecure = AmazonS3ConfigKey::Client(ClientConfigKey::AllowInvalidCertificates);
        assert_eq!(lookup(&c, insecure).as_deref(), Some("true"));

        let virtual_hosted =
            BTreeMap::from([("s3ForcePathStyle".to_string(), "false".to_string())]);
        let c = s3_config(&virtual_hosted, env).unwrap();
        assert_eq!(
            lookup(&c, AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("true")
        );
    }

    #[test]
    fn bad_options_are_named() {
        let bad = BTreeMap::from([("s3ForcePathStyle".to_string(), "maybe".to_string())]);
        let err = s3_config(&bad, |_| None).unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
        let unknown = BTreeMap::from([("bogusKey".to_string(), "1".to_string())]);
        let err = s3_config(&unknown, |_| None).unwrap_err();
        assert!(matches!(err, StorageError::InvalidOption { ref key, .. } if key == "bogusKey"));
        assert!(err.to_string().contains("s3ForcePathStyle"), "{err}");
        let err = Location::parse("memory://")
            .unwrap()
            .open(&BTreeMap::from([("x".to_string(), "y".to_string())]))
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidOption { .. }));
    }

    #[test]
    fn azure_endpoints_and_emulator_options() {
        let lookup = |config: &[(AzureConfigKey, String)], key: AzureConfigKey| {
            config
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let allow_http = AzureConfigKey::Client(ClientConfigKey::AllowHttp);
        let options = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // An Azurite endpoint: plain HTTP is implied, Velero's account key is understood.
        let c = azure_config(&options(&[
            ("storageAccount", "devstoreaccount1"),
            ("access_key", "a2V5"),
            ("endpoint", "http://127.0.0.1:10000/devstoreaccount1"),
        ]))
        .unwrap();
        assert_eq!(
            lookup(&c, AzureConfigKey::AccountName).as_deref(),
            Some("devstoreaccount1")
        );
        assert_eq!(
            lookup(&c, AzureConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(lookup(&c, allow_http).as_deref(), Some("true"));
        // HTTPS implies nothing; an explicit allow_http is kept as given.
        let c = azure_config(&options(&[("endpoint", "https://a.blob.core.windows.net")])).unwrap();
        assert_eq!(lookup(&c, allow_http), None);
        let c = azure_config(&options(&[
            ("endpoint", "http://127.0.0.1:1/a"),
            ("allow_http", "false"),
        ]))
        .unwrap();
        assert_eq!(lookup(&c, allow_http).as_deref(), Some("false"));
        // Without an endpoint the emulator mode is object_store's own (127.0.0.1:10000).
        let c = azure_config(&options(&[("use_emulator", "true")])).unwrap();
        assert_eq!(
            lookup(&c, AzureConfigKey::UseEmulator).as_deref(),
            Some("true")
        );

        let err = azure_config(&options(&[
            ("use_emulator", "true"),
            ("endpoint", "http://127.0.0.1:1/a"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidOption { ref key, .. } if key == "use_emulator")
        );
        assert!(err.to_string().contains("remove use_emulator"), "{err}");
        let err = azure_config(&options(&[("endpoint", "127.0.0.1:10000")])).unwrap_err();
        assert!(matches!(err, StorageError::InvalidOption { ref key, .. } if key == "endpoint"));
        assert!(err.to_string().contains("blob.core.windows.net"), "{err}");
        let err = azure_config(&options(&[("bogus", "1")])).unwrap_err();
        assert!(err.to_string().contains("storageAccount"), "{err}");

        // From the environment, only the HTTP client's settings are taken again.
        let env = [
            ("AZURE_ALLOW_HTTP", "true"),
            ("AZURE_STORAGE_ACCOUNT_NAME", "a"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AZURE_NOT_A_KEY", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            client_env(env.clone().into_iter(), "AZURE_", azure_client_key),
            vec![(allow_http, "true".to_string())]
        );
        // The same for GCS: only GOOGLE_* client settings, none of Azure's.
        let google = [
            ("GOOGLE_ALLOW_HTTP", "true"),
            ("GOOGLE_SERVICE_ACCOUNT", "/k.json"),
            ("GOOGLE_NOT_A_KEY", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            client_env(env.into_iter().chain(google), "GOOGLE_", google_client_key),
            vec![(
                GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
                "true".to_string()
            )]
        );
    }

    #[test]
    fn file_location_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nested/store");
        let url = Url::from_directory_path(&root).unwrap();
        Location::parse(url.as_str())
            .unwrap()
            .open(&BTreeMap::new())
            .unwrap();
        assert!(root.is_dir());
    }
}
