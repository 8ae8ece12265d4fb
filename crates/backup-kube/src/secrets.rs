//! Reading one key of a Secret in a project's namespace, with errors that say which Secret or
//! key is missing and never what a Secret contains.
//!
//! The controller holds no cluster-wide right to Secrets: a project lets it read its own by
//! binding the chart's `<fullname>-project-secrets` ClusterRole (`get` only) to the controller's
//! ServiceAccount in its namespace (`examples/project-onboarding.yaml`). Until it has, a read
//! is refused with 403, which is [`SecretError::NotShared`]: a condition saying what to create.

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
    /// The project has not let the controller read its Secrets (the API answered 403).
    #[error(
        "namespace {namespace:?} has not let the backup controller read its Secrets (it may \
         not get Secret {name:?}): create in {namespace:?} the RoleBinding of \
         examples/project-onboarding.yaml, which binds the ClusterRole \
         backup-fleet-project-secrets (get on secrets) to the controller's ServiceAccount; for \
         the chart's default release: `kubectl -n {namespace} create rolebinding \
         backup-fleet-secrets --clusterrole=backup-fleet-project-secrets \
         --serviceaccount=backup-fleet-system:backup-fleet`"
    )]
    NotShared {
        /// The project's namespace.
        namespace: String,
        /// The Secret that could not be read.
        name: String,
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

/// The condition reason of [`SecretError::NotShared`], whatever reads the Secret.
pub const NOT_SHARED_REASON: &str = "SecretsNotShared";

/// How soon an object blocked by `reason` looks again, at most `every`: a project's consent (a
/// RoleBinding) wakes nothing the controller watches, so a `SecretsNotShared` object checks
/// every [`CONSENT_RECHECK`] instead of waiting for its next regular probe.
pub fn recheck_after(reason: &str, every: std::time::Duration) -> std::time::Duration {
    match reason == NOT_SHARED_REASON {
        true => every.min(CONSENT_RECHECK),
        false => every,
    }
}

/// See [`recheck_after`].
pub const CONSENT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

impl SecretError {
    /// Why reading Secret `name` of `namespace` failed with `source`: a 403 is the project's
    /// missing consent, anything else is the API's failure.
    pub fn from_api(namespace: &str, name: &str, source: kube::Error) -> Self {
        match crate::errors::status_code(&source) {
            Some(403) => SecretError::NotShared {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            _ => SecretError::Api {
                name: name.to_string(),
                source,
            },
        }
    }

    /// Whether the project has not shared its Secrets with the controller.
    pub fn is_not_shared(&self) -> bool {
        matches!(self, SecretError::NotShared { .. })
    }

    /// Whether reading again later can succeed without a change (the API was unavailable).
    pub fn is_retryable(&self) -> bool {
        match self {
            SecretError::Api { source, .. } => crate::errors::is_retryable(source),
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
        Err(source) => return Err(SecretError::from_api(namespace, name, source)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_waiting_for_consent_look_again_soon() {
        let ten_minutes = std::time::Duration::from_secs(600);
        assert_eq!(
            recheck_after(NOT_SHARED_REASON, ten_minutes),
            CONSENT_RECHECK
        );
        assert_eq!(recheck_after("Unreachable", ten_minutes), ten_minutes);
        let second = std::time::Duration::from_secs(1);
        assert_eq!(recheck_after(NOT_SHARED_REASON, second), second);
    }

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: "secrets \"s3-creds\" is forbidden: User cannot get resource".into(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn a_forbidden_read_is_a_project_that_has_not_shared_its_secrets() {
        let e = SecretError::from_api("project-a", "s3-creds", api_error(403, "Forbidden"));
        assert!(e.is_not_shared(), "{e:?}");
        assert!(!e.is_retryable());
        let message = e.to_string();
        for said in [
            "\"project-a\" has not let the backup controller read its Secrets",
            "\"s3-creds\"",
            "examples/project-onboarding.yaml",
            "backup-fleet-project-secrets",
            "kubectl -n project-a create rolebinding",
        ] {
            assert!(message.contains(said), "{said:?} missing from: {message}");
        }
        assert!(
            !message.contains("User cannot"),
            "the API's text is not echoed"
        );
    }

    #[test]
    fn other_api_failures_stay_api_errors() {
        let unavailable = SecretError::from_api("p", "s", api_error(503, "ServiceUnavailable"));
        assert!(matches!(unavailable, SecretError::Api { .. }));
        assert!(unavailable.is_retryable());
        let unauthorized = SecretError::from_api("p", "s", api_error(401, "Unauthorized"));
        assert!(!unauthorized.is_not_shared());
    }
}
