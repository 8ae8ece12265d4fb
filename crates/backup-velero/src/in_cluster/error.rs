//! Why the in-cluster engine could not do what was asked, by kind.

use std::time::Duration;

use backup_core::EngineError;

/// In-cluster engine failures. Messages say what to fix; [`VeleroError::metric_label`] gives a
/// fixed label per kind.
#[derive(Debug, thiserror::Error)]
pub enum VeleroError {
    /// The cluster does not serve Velero's API (no CRDs) or the Velero namespace is missing.
    #[error(
        "Velero is not installed in this cluster: {reason}; install Velero (e.g. `velero install`) or use the direct engine"
    )]
    NotInstalled {
        /// What is missing.
        reason: String,
    },
    /// The CRDs exist but no Velero server answered a ServerStatusRequest in time.
    #[error(
        "Velero's CRDs are installed but no Velero server processed ServerStatusRequest {request:?} in namespace {namespace:?} within {waited:?}: check that the velero Deployment runs in that namespace and is healthy"
    )]
    NotResponding {
        /// The Velero namespace.
        namespace: String,
        /// The request that stayed unanswered.
        request: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Velero marked the storage location Unavailable.
    #[error(
        "backup storage location {name:?} is Unavailable: {message}; fix the bucket, endpoint or credentials (Velero re-validates the location periodically)"
    )]
    LocationUnavailable {
        /// BSL name.
        name: String,
        /// Velero's `status.message`, verbatim.
        message: String,
    },
    /// Writing through a ReadOnly location.
    #[error(
        "backup storage location {name:?} is ReadOnly: backups and deletions need a ReadWrite location"
    )]
    LocationReadOnly {
        /// BSL name.
        name: String,
    },
    /// The request is invalid before reaching Velero.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Velero rejected an object (phase `FailedValidation`); its errors verbatim.
    #[error("Velero rejected {what} {name:?} (FailedValidation): {}", errors.join("; "))]
    Rejected {
        /// `schedule`, `backup`, ...
        what: &'static str,
        /// Velero object name.
        name: String,
        /// `status.validationErrors`, verbatim.
        errors: Vec<String>,
    },
    /// A named object does not exist.
    #[error("{what} {name:?} not found")]
    NotFound {
        /// `backup`, `restore`, ...
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// An object with this name exists with a different spec.
    #[error(
        "{what} {name:?} already exists with a different spec: choose another name or delete the existing one"
    )]
    AlreadyExists {
        /// `backup`, `restore`, ...
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Velero did not answer a request in time.
    #[error("timed out after {waited:?} waiting for {what}: is the Velero server running?")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The Kubernetes API failed.
    #[error("Kubernetes API error while {action}: {source}")]
    Api {
        /// What we were doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl VeleroError {
    /// A fixed, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            VeleroError::NotInstalled { .. } => "velero_not_installed",
            VeleroError::NotResponding { .. } => "velero_not_responding",
            VeleroError::LocationUnavailable { .. } => "location_unavailable",
            VeleroError::LocationReadOnly { .. } => "location_read_only",
            VeleroError::Invalid(_) => "invalid",
            VeleroError::Rejected { .. } => "rejected",
            VeleroError::NotFound { .. } => "not_found",
            VeleroError::AlreadyExists { .. } => "already_exists",
            VeleroError::Timeout { .. } => "timeout",
            VeleroError::Api { .. } => "api",
        }
    }

    /// Wraps a client error with what we were doing.
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        VeleroError::Api {
            action: action.into(),
            source,
        }
    }
}

fn api_status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

/// HTTP status code of an API error, if it is one.
pub(crate) fn api_code(e: &kube::Error) -> Option<u16> {
    api_status(e).map(|s| s.code)
}

impl From<VeleroError> for EngineError {
    fn from(e: VeleroError) -> Self {
        let msg = e.to_string();
        match e {
            VeleroError::NotInstalled { .. }
            | VeleroError::NotResponding { .. }
            | VeleroError::LocationUnavailable { .. }
            | VeleroError::Timeout { .. } => EngineError::Unavailable { reason: msg },
            VeleroError::LocationReadOnly { .. }
            | VeleroError::Invalid(_)
            | VeleroError::Rejected { .. } => EngineError::Invalid(msg),
            VeleroError::NotFound { what, name } => EngineError::NotFound { what, name },
            VeleroError::AlreadyExists { what, name } => EngineError::AlreadyExists { what, name },
            VeleroError::Api { action, source } => backup_kube::errors::engine_error(
                format!("Kubernetes API error while {action}"),
                source,
            ),
        }
    }
}
