//! Reading one key of a Secret in a project's namespace, with errors that say which Secret or
//! key is missing and never what a Secret contains.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// Why a Secret key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No such Secret in the namespace.
    #[error("Secret {name:?} does not exist in namespace {namespace:?}; create it there")]
    Missing {
        /// The namespace looked in.
        namespace: String,
        /// The Secret's name.
        name: String,
    },
    /// The Secret lacks the key.
    #[error(
        "Secret {name:?} has no key {key:?} (it has: {available}); add the key or fix the reference"
    )]
    KeyMissing {
        /// The Secret's name.
        name: String,
        /// The key asked for.
        key: String,
        /// The keys it has, comma-separated (names only).
        available: String,
    },
    /// Reading it failed.
    #[error("reading Secret {name:?}: {source}")]
    Api {
        /// The Secret's name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl SecretError {
    /// Whether reading again later can succeed without a change (the API was unavailable).
    pub fn is_retryable(&self) -> bool {
        match self {
            SecretError::Api { source, .. } => backup_velero::kube_errors::is_retryable(source),
            _ => false,
        }
    }
}

/// One key of a Secret, and the Secret's resourceVersion (which changes with its content).
pub struct SecretValue {
    /// The key's bytes.
    pub data: Vec<u8>,
    /// The Secret's resourceVersion.
    pub resource_version: String,
}

/// Reads `key` of Secret `name` in `namespace`.
pub async fn read_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<SecretValue, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(SecretError::Missing {
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        Err(source) => {
            return Err(SecretError::Api {
                name: name.to_string(),
                source,
            });
        }
    };
    let resource_version = secret.metadata.resource_version.clone().unwrap_or_default();
    let mut data = secret.data.unwrap_or_default();
    match data.remove(key) {
        Some(value) => Ok(SecretValue {
            data: value.0,
            resource_version,
        }),
        None => Err(SecretError::KeyMissing {
            name: name.to_string(),
            key: key.to_string(),
            available: match data.keys().cloned().collect::<Vec<_>>().join(", ") {
                keys if keys.is_empty() => "no keys".to_string(),
                keys => keys,
            },
        }),
    }
}
