//! StorageLocation → an opened [`Repository`], cached while neither the location nor its
//! credential Secret changes, so a fleet run of hundreds of clusters shares one store client.
//!
//! Locations are per project: a name is looked up in the asking object's namespace only, and
//! the repository is opened with the location's own credentials, never the controller's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use backup_storage::Repository;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::NamespacedName;
use crate::secrets::{self, SecretError};
use crate::tenancy::TenantPolicy;
use backup_api::storage_location::LocationEncryption;
use backup_api::{InvalidField, StorageLocation};

/// A location ready to use.
#[derive(Clone)]
pub struct ResolvedLocation {
    /// Its name.
    pub name: String,
    /// The validated spec.
    pub spec: backup_core::StorageLocationSpec,
    /// The repository at the location's base prefix (scope it per project and cluster).
    pub repo: Repository,
    /// The credentials file, for engines that hand it to Velero in the user cluster.
    pub credentials: Option<Arc<Vec<u8>>>,
}

/// Why a location cannot be used; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LocationProblem {
    /// The named location does not exist in the namespace.
    #[error(
        "StorageLocation {name:?} does not exist in namespace {namespace:?}; locations are per project, so create it in this namespace or name one that exists here"
    )]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The name asked for.
        name: String,
    },
    /// No location was named and none is the default.
    #[error(
        "no StorageLocation in namespace {namespace:?} is marked default: set spec.storageLocation, or set default: true on one location"
    )]
    NoDefault {
        /// The namespace.
        namespace: String,
    },
    /// Several locations claim to be the default.
    #[error(
        "StorageLocations {names} in namespace {namespace:?} are all marked default: keep default: true on one of them"
    )]
    AmbiguousDefault {
        /// The namespace.
        namespace: String,
        /// The defaults, comma-separated.
        names: String,
    },
    /// The location's spec is invalid.
    #[error("StorageLocation {name:?} is invalid: {field}")]
    Invalid {
        /// The location.
        name: String,
        /// The field.
        field: InvalidField,
    },
    /// Its credentials cannot be read.
    #[error("StorageLocation {name:?}: {source}")]
    Credentials {
        /// The location.
        name: String,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// The management API could not be asked (only where locations are read straight from the
    /// API, without an informer).
    #[error("{action}: {}", crate::errors::summary(source))]
    Api {
        /// What we were doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The store cannot be configured from the spec and credentials.
    #[error("StorageLocation {name:?} cannot be opened: {source}")]
    Open {
        /// The location.
        name: String,
        /// Why.
        #[source]
        source: Box<backup_storage::StorageError>,
    },
}

impl LocationProblem {
    /// A CamelCase reason for conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            LocationProblem::NotFound { .. } => "LocationNotFound",
            LocationProblem::NoDefault { .. } => "NoDefaultLocation",
            LocationProblem::AmbiguousDefault { .. } => "AmbiguousDefaultLocation",
            LocationProblem::Invalid { .. } => "LocationInvalid",
            LocationProblem::Credentials { source, .. } if source.is_not_shared() => {
                secrets::NOT_SHARED_REASON
            }
            LocationProblem::Credentials { .. } => "CredentialsUnreadable",
            LocationProblem::Api { .. } => "ApiUnavailable",
            LocationProblem::Open { source, .. } => {
                source.refusal_reason().unwrap_or("LocationUnusable")
            }
        }
    }

    /// Whether asking again later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            LocationProblem::Credentials { source, .. } => source.is_retryable(),
            LocationProblem::Api { source, .. } => crate::errors::is_retryable(source),
            _ => false,
        }
    }
}

/// What a cached repository was built from; any change rebuilds it.
#[derive(Clone, PartialEq, Eq)]
struct Built {
    uid: String,
    generation: Option<i64>,
    secret_version: Option<String>,
    identity_version: Option<String>,
}

/// Opened locations by name, with what each was built from.
type Cache = HashMap<NamespacedName, (Built, ResolvedLocation)>;

/// The cache of opened locations.
#[derive(Clone)]
pub struct Locations {
    client: kube::Client,
    tenancy: TenantPolicy,
    cache: Arc<Mutex<Cache>>,
}

impl Locations {
    /// An empty cache reading Secrets through `client`, opening locations as `tenancy` says.
    pub fn new(client: kube::Client, tenancy: TenantPolicy) -> Self {
        Locations {
            client,
            tenancy,
            cache: Arc::default(),
        }
    }

    /// The location `name` of `namespace`, or its default location when `name` is `None`.
    pub async fn resolve(
        &self,
        store: &Store<StorageLocation>,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<ResolvedLocation, LocationProblem> {
        let location = pick(store, namespace, name)?;
        self.open(&location).await
    }

    /// [`Locations::resolve`] for a writer of `what` ("snapshots", "backups"): a ReadOnly
    /// location is a problem too. `Ok(Err((reason, message)))` is a problem to report as a
    /// condition; `Err` only what retrying can fix.
    pub async fn resolve_writable(
        &self,
        store: &Store<StorageLocation>,
        namespace: &str,
        name: Option<&str>,
        what: &str,
    ) -> Result<Result<ResolvedLocation, (String, String)>, LocationProblem> {
        let location = match self.resolve(store, namespace, name).await {
            Ok(location) => location,
            Err(problem) if problem.is_retryable() => return Err(problem),
            Err(problem) => return Ok(Err((problem.reason().into(), problem.to_string()))),
        };
        if !location.repo.is_writable() {
            return Ok(Err((
                "LocationReadOnly".into(),
                format!(
                    "StorageLocation {} is ReadOnly: {what} cannot be written to it",
                    location.name
                ),
            )));
        }
        Ok(Ok(location))
    }

    /// Opens `location` (from the cache when nothing changed).
    pub async fn open(
        &self,
        location: &StorageLocation,
    ) -> Result<ResolvedLocation, LocationProblem> {
        let name = location.name_any();
        let namespace = location.namespace().unwrap_or_default();
        // Refused options first, so the condition names the refusal (`OptionNotAllowed`),
        // not an invalid spec.
        backup_core::location_options::check_options(
            &location.spec.provider,
            &location.spec.config,
        )
        .map_err(|e| LocationProblem::Open {
            name: name.clone(),
            source: Box::new(e.into()),
        })?;
        let spec = location
            .spec
            .to_core()
            .map_err(|field| LocationProblem::Invalid {
                name: name.clone(),
                field,
            })?;
        let credentials = self
            .read_secret(&name, &namespace, spec.credential.as_ref())
            .await?;
        let encryption = location.spec.encryption.as_ref();
        let identity = self
            .read_secret(
                &name,
                &namespace,
                encryption.and_then(|e| e.identity_secret.as_ref()),
            )
            .await?;
        let built = Built {
            uid: location.uid().unwrap_or_default(),
            generation: location.metadata.generation,
            secret_version: credentials.as_ref().map(|c| c.resource_version.clone()),
            identity_version: identity.as_ref().map(|c| c.resource_version.clone()),
        };
        let key = (namespace.clone(), name.clone());
        if let Some((cached_built, cached)) = self.lock().get(&key)
            && *cached_built == built
        {
            return Ok(cached.clone());
        }
        let data = credentials.map(|c| Arc::new(c.data));
        let repo = Repository::open_spec(
            &spec,
            data.as_deref().map(Vec::as_slice),
            &self.tenancy.storage(&namespace),
        )
        .map_err(|source| LocationProblem::Open {
            name: name.clone(),
            source: Box::new(source),
        })?;
        let invalid = |field: &str, message: String| LocationProblem::Invalid {
            name: name.clone(),
            field: InvalidField::new(field, message),
        };
        let mut repo = repo;
        if let Some(encryption) = encryption {
            let keys = recipients(encryption).map_err(|field| LocationProblem::Invalid {
                name: name.clone(),
                field,
            })?;
            if let Some(keys) = keys {
                repo = repo.with_encryption(keys);
            }
        }
        if let Some(identity) = identity {
            let text = String::from_utf8(identity.data).map_err(|_| {
                invalid(
                    "spec.encryption.identitySecret",
                    "the key is not text: store the identity file age-keygen writes".into(),
                )
            })?;
            // The parse error names no key material, only what is wrong with the file.
            let identities = backup_storage::Identities::parse(&text)
                .map_err(|e| invalid("spec.encryption.identitySecret", format!("{e}")))?;
            repo = repo.with_identities(identities);
        }
        let resolved = ResolvedLocation {
            name,
            spec,
            repo,
            credentials: data,
        };
        self.lock().insert(key, (built, resolved.clone()));
        Ok(resolved)
    }

    /// The Secret key `reference` names in `namespace`, read for location `location` (`None`
    /// when the spec names none).
    async fn read_secret(
        &self,
        location: &str,
        namespace: &str,
        reference: Option<&backup_core::CredentialRef>,
    ) -> Result<Option<secrets::SecretValue>, LocationProblem> {
        let Some(reference) = reference else {
            return Ok(None);
        };
        secrets::read_key(&self.client, namespace, &reference.name, &reference.key)
            .await
            .map(Some)
            .map_err(|source| LocationProblem::Credentials {
                name: location.to_string(),
                source,
            })
    }

    /// Drops the cached repository of a deleted location.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens location `name` (or the namespace's default) read straight from the API, for a
/// process that keeps no informer (the etcd agent next to etcd), under the same `tenancy` as
/// the controller's.
pub async fn open_from_api(
    client: &kube::Client,
    namespace: &str,
    name: Option<&str>,
    tenancy: TenantPolicy,
) -> Result<ResolvedLocation, LocationProblem> {
    let api: kube::Api<StorageLocation> = kube::Api::namespaced(client.clone(), namespace);
    let listed = api
        .list(&Default::default())
        .await
        .map_err(|source| LocationProblem::Api {
            action: format!("listing the StorageLocations of {namespace}"),
            source,
        })?;
    let location = pick_from(listed.items.into_iter().map(Arc::new), namespace, name)?;
    Locations::new(client.clone(), tenancy)
        .open(&location)
        .await
}

/// The age recipients `encryption` names, parsed by storage's parser (`None`: the location only
/// reads encrypted backups); a bad key is named with the fix.
pub fn recipients(
    encryption: &LocationEncryption,
) -> Result<Option<backup_storage::Encryption>, InvalidField> {
    encryption.check_shape()?;
    if encryption.recipients.is_empty() {
        return Ok(None);
    }
    let mut parsed = Vec::with_capacity(encryption.recipients.len());
    for text in &encryption.recipients {
        parsed.push(text.parse::<backup_storage::Recipient>().map_err(|e| {
            InvalidField::new(
                "spec.encryption.recipients",
                format!("{text:?}: {e}; use an age public key as `age-keygen -y` prints it"),
            )
        })?);
    }
    backup_storage::Encryption::new(parsed)
        .map(Some)
        .map_err(|e| InvalidField::new("spec.encryption.recipients", e.to_string()))
}

/// The location object a reference means: by name in the namespace, or its one default.
pub fn pick(
    store: &Store<StorageLocation>,
    namespace: &str,
    name: Option<&str>,
) -> Result<Arc<StorageLocation>, LocationProblem> {
    pick_from(store.state(), namespace, name)
}

/// [`pick`] among `candidates`.
fn pick_from(
    candidates: impl IntoIterator<Item = Arc<StorageLocation>>,
    namespace: &str,
    name: Option<&str>,
) -> Result<Arc<StorageLocation>, LocationProblem> {
    let in_namespace = candidates
        .into_iter()
        .filter(|l| l.namespace().as_deref() == Some(namespace));
    match name {
        Some(name) => in_namespace
            .into_iter()
            .find(|l| l.name_any() == name)
            .ok_or_else(|| LocationProblem::NotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
        None => {
            let mut defaults: Vec<Arc<StorageLocation>> =
                in_namespace.filter(|l| l.spec.default).collect();
            defaults.sort_by_key(|l| l.name_any());
            match defaults.len() {
                0 => Err(LocationProblem::NoDefault {
                    namespace: namespace.to_string(),
                }),
                1 => Ok(defaults.remove(0)),
                _ => Err(LocationProblem::AmbiguousDefault {
                    namespace: namespace.to_string(),
                    names: defaults
                        .iter()
                        .map(|l| l.name_any())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_age_keys_or_a_named_refusal() {
        let parse = |encryption: serde_json::Value| {
            recipients(&serde_json::from_value::<LocationEncryption>(encryption).unwrap())
        };
        let key = backup_storage::Identities::generate().recipients()[0].to_string();
        let keys = parse(serde_json::json!({"recipients": [key]}))
            .unwrap()
            .unwrap();
        assert_eq!(keys.recipients().len(), 1);
        let reading_only = serde_json::json!({"identitySecret": {"name": "k", "key": "id"}});
        assert!(parse(reading_only).unwrap().is_none());
        for (bad, field) in [
            (serde_json::json!({}), "spec.encryption"),
            (
                serde_json::json!({"recipients": ["age1notakey"]}),
                "spec.encryption.recipients",
            ),
            (
                serde_json::json!({"recipients": ["ssh-ed25519 AAAA"]}),
                "spec.encryption.recipients",
            ),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.field, field, "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_the_project_has_not_shared_are_said_so() {
        let problem = |source| LocationProblem::Credentials {
            name: "main".into(),
            source,
        };
        let not_shared = problem(SecretError::NotShared {
            namespace: "project-a".into(),
            name: "s3-creds".into(),
        });
        assert_eq!(not_shared.reason(), "SecretsNotShared");
        assert!(!not_shared.is_retryable());
        let missing = problem(SecretError::Missing {
            namespace: "project-a".into(),
            name: "s3-creds".into(),
        });
        assert_eq!(missing.reason(), "CredentialsUnreadable");
    }
}
