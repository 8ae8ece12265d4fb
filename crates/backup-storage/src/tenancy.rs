//! Opening a location a project declared (a StorageLocation) without lending it anything of the
//! opener's: its files, its environment and cloud identity, its network position.
//!
//! [`Tenancy`] is what the platform decides (the controller's flags): which addresses projects
//! may not reach, the directory `file` locations must stay under, and whether a location without
//! credentials may use the process's own identity. [`Repository::open_spec`] applies it:
//!
//! - `config` keys outside the provider's allow-list are refused
//!   ([`backup_core::location_options`]);
//! - credentials come from the location's credential Secret only: no `AWS_*`/`GOOGLE_*`/`AZURE_*`
//!   variables, no instance metadata, no workload identity, unless the platform lends its
//!   identity to the namespace;
//! - every connection goes through [`GuardedConnector`]: each address dialled, after DNS and
//!   after redirects, is checked against the address policy;
//! - a `file` location must lie under the platform's root, symlinks resolved.
//!
//! `backupctl` opening a URL on its user's own machine uses [`Location::open`] instead, which
//! keeps the user's environment and any directory.
//!
//! [`Repository::open_spec`]: crate::Repository::open_spec
//! [`Location::open`]: crate::Location::open

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::StorageLocationSpec;
use backup_core::location_options::check_options;
use backup_net::{AddressPolicy, GuardedResolver, redirect_policy};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions, ObjectStore};
use std::collections::BTreeMap;

use crate::credentials::credential_options;
use crate::error::{Result, StorageError};
use crate::location::{Backend, Location};

/// What the platform lets a project's StorageLocations use.
#[derive(Debug, Clone, Default)]
pub struct Tenancy {
    /// Addresses no connection made for the project may reach (always link-local and the
    /// metadata services, plus the platform's own ranges).
    pub addresses: Arc<AddressPolicy>,
    /// The directory `file` locations must lie under; `None` refuses `file` locations.
    pub file_root: Option<PathBuf>,
    /// Whether a location without a credential Secret may use the process's own identity
    /// (environment, instance metadata, workload identity). The platform grants this per
    /// namespace; the connections then use the stores' own clients, which must reach the
    /// metadata service, and only the location's endpoint is checked, when it is opened.
    pub lend_identity: bool,
}

/// The connect and request timeouts of a project's store clients (as [`Location::open`]'s).
///
/// [`Location::open`]: crate::Location::open
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// object_store's HTTP clients for a project's location: reqwest with the guarded resolver and
/// redirect policy, the location's own CA bundle, and a check of every request's literal host.
#[derive(Debug)]
pub(crate) struct GuardedConnector {
    pub(crate) policy: Arc<AddressPolicy>,
    /// PEM certificates from the location's `caCert`.
    pub(crate) ca_bundle: Option<Vec<u8>>,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let flag = |key| {
            options
                .get_config_value(&key)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        let mut builder = reqwest::ClientBuilder::new()
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&self.policy))))
            .redirect(redirect_policy(Arc::clone(&self.policy)))
            // The platform's own proxy variables would hide the address dialled.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .https_only(!flag(ClientConfigKey::AllowHttp))
            .danger_accept_invalid_certs(flag(ClientConfigKey::AllowInvalidCertificates));
        if let Some(pem) = &self.ca_bundle {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                object_store::Error::Generic {
                    store: "HTTP client",
                    source: Box::new(e),
                }
            })?;
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder.build().map_err(|e| object_store::Error::Generic {
            store: "HTTP client",
            source: Box::new(e),
        })?;
        Ok(HttpClient::new(GuardedService {
            client,
            policy: Arc::clone(&self.policy),
        }))
    }
}

/// Refuses a request whose host is a denied literal before reqwest sees it (names are checked
/// by the resolver, redirects by the redirect policy).
#[derive(Debug)]
struct GuardedService {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

#[async_trait]
impl HttpService for GuardedService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if let Some(host) = request.uri().host()
            && let Err(denied) = self.policy.check_host(host)
        {
            return Err(HttpError::new(HttpErrorKind::Connect, denied));
        }
        self.client.call(request).await
    }
}

/// The store of a project's location: see the module documentation.
pub(crate) fn open_store(
    spec: &StorageLocationSpec,
    credentials: Option<&[u8]>,
    tenancy: &Tenancy,
) -> Result<Arc<dyn ObjectStore>> {
    check_options(&spec.provider, &spec.config)?;
    let location = Location::from_spec(spec)?;
    if let Backend::File(dir) = location.backend() {
        let root = tenancy
            .file_root
            .as_deref()
            .ok_or(StorageError::FileLocationsDisabled)?;
        let dir = confine_to_root(root, dir)?;
        return Location::file(dir).open(&BTreeMap::new());
    }
    let provider = spec.provider.trim_start_matches("velero.io/");
    let mut options = store_options(provider, &spec.config)?;
    for (field, url) in endpoints(provider, &spec.config) {
        check_endpoint(field, url, &tenancy.addresses)?;
    }
    match credentials {
        Some(file) => options.extend(credential_options(
            provider,
            file,
            spec.config.get("profile").map(String::as_str),
        )?),
        None if tenancy.lend_identity => {}
        None => {
            return Err(StorageError::CredentialRequired {
                provider: provider.to_string(),
            });
        }
    }
    location.open_for_project(&options, spec.ca_cert.as_deref(), tenancy)
}

/// The allowed `config` keys in the form [`Location`]'s option mapping takes: Velero's S3 keys
/// as they are (it knows them), `checksumAlgorithm` and Azure's `storageAccountURI` mapped, and
/// what the direct engine does not use (download links, the ARM lookup) dropped.
fn store_options(
    provider: &str,
    config: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut options = BTreeMap::new();
    for (key, value) in config {
        match (provider, key.as_str()) {
            ("aws", "publicUrl" | "profile") | ("azure", "resourceGroup" | "subscriptionId") => {}
            ("aws", "checksumAlgorithm") => match value.to_ascii_uppercase().as_str() {
                "" => {}
                "SHA256" => {
                    options.insert("checksum_algorithm".into(), "sha256".into());
                }
                other => {
                    return Err(StorageError::InvalidOption {
                        key: key.clone(),
                        reason: format!(
                            "`{other}` is not supported by the direct engine; use SHA256 or leave it empty"
                        ),
                    });
                }
            },
            ("azure", "storageAccountURI") => {
                options.insert("endpoint".into(), value.clone());
            }
            _ => {
                options.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(options)
}

/// The config keys that name an address, with their field path.
fn endpoints<'c>(
    provider: &str,
    config: &'c BTreeMap<String, String>,
) -> Vec<(&'static str, &'c str)> {
    let named = |key, field| config.get(key).map(|url| (field, url.as_str()));
    match provider {
        "aws" => named("s3Url", "spec.config.s3Url").into_iter().collect(),
        "azure" => named("storageAccountURI", "spec.config.storageAccountURI")
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Refuses an endpoint whose host is a denied literal or a metadata service's name, before
/// anything connects (names are checked again, per resolved address, on every connection).
fn check_endpoint(field: &'static str, url: &str, policy: &AddressPolicy) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| StorageError::InvalidOption {
        key: field.trim_start_matches("spec.config.").into(),
        reason: format!("`{url}` is not a URL ({e}); use e.g. https://minio.example:9000"),
    })?;
    match parsed.host_str().map(|host| policy.check_host(host)) {
        Some(Err(denied)) => Err(StorageError::AddressNotAllowed {
            what: field.to_string(),
            denied,
        }),
        _ => Ok(()),
    }
}

/// `dir` if it lies under `root`, judged on real paths: `root` is resolved, and so is the
/// deepest part of `dir` that exists, so neither `..` nor a symlink leads out. Creates nothing.
pub(crate) fn confine_to_root(root: &Path, dir: &Path) -> Result<PathBuf> {
    let outside = |how: &str| StorageError::OutsideFileRoot {
        directory: dir.display().to_string(),
        root: root.display().to_string(),
        how: how.to_string(),
    };
    if dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(outside("it contains '..'"));
    }
    let real_root = root.canonicalize().map_err(|e| StorageError::FileRoot {
        root: root.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut existing = dir.to_path_buf();
    let mut missing = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => return Err(outside("no part of it exists")),
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|_| outside("it cannot be resolved"))?;
    if !real.starts_with(&real_root) {
        return Err(outside(if real == existing {
            "it is not under the root"
        } else {
            "a symlink in it leads out of the root"
        }));
    }
    Ok(missing
        .into_iter()
        .rev()
        .fold(real, |path, part| path.join(part)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_location_stays_under_the_root() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("p1")).unwrap();
        let real_root = root.canonicalize().unwrap();
        assert_eq!(
            confine_to_root(&root, &root.join("p1/new/deeper")).unwrap(),
            real_root.join("p1/new/deeper")
        );
        let err = confine_to_root(&root, &base.path().join("elsewhere")).unwrap_err();
        assert!(err.to_string().contains("not under the root"), "{err}");
        let err = confine_to_root(&root, &root.join("p1/../../x")).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
        // A symlink inside the root that points out of it.
        std::os::unix::fs::symlink(base.path(), root.join("escape")).unwrap();
        let err = confine_to_root(&root, &root.join("escape/x")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = confine_to_root(&root, &root.join("escape")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = confine_to_root(&base.path().join("missing-root"), &root).unwrap_err();
        assert!(matches!(err, StorageError::FileRoot { .. }), "{err}");
    }
}
