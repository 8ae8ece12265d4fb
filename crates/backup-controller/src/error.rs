//! The controller's error type: what failed, whether retrying can help, and a fixed metric
//! label per kind.
//!
//! A spec the user must fix is not an error here: reconcilers report it as a condition and wait
//! for the next change. Errors are what the controller itself could not do (the management
//! API or storage unreachable, a status write refused); the shared `error_policy` backs off on
//! the retryable ones.

use backup_core::EngineError;
use backup_storage::StorageError;

/// What a reconcile could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the management cluster's API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What we were doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An engine failed on a user cluster.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A StorageLocation could not be used (only the retryable cases become errors; the rest
    /// are conditions).
    #[error(transparent)]
    Location(#[from] backup_kube::locations::LocationProblem),
    /// A ManagedCluster could not be reached (as above).
    #[error(transparent)]
    Cluster(#[from] crate::clusters::ClusterProblem),
    /// The finalizer helper failed (adding or removing our finalizer, or the cleanup).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A value could not be serialised for a write.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps a management-API error with what we were doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// A fixed, low-cardinality label for metrics (`error="kube"`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Engine(e) => e.metric_label(),
            Error::Storage(_) => "storage",
            Error::Location(_) => "location",
            Error::Cluster(_) => "cluster",
            Error::Finalizer(_) => "finalizer",
            Error::Encode { .. } => "encode",
        }
    }

    /// Whether retrying the reconcile later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kube { source, .. } => backup_kube::errors::is_retryable(source),
            Error::Engine(e) => e.is_retryable(),
            Error::Storage(StorageError::Store { .. }) => true,
            Error::Storage(_) => false,
            Error::Location(e) => e.is_retryable(),
            Error::Cluster(e) => e.is_retryable(),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.is_retryable(),
                // The helper patches finalizers with a JSON-patch `test` of the list it read;
                // 422 means the object changed meanwhile, which a retry resolves.
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => {
                    backup_kube::errors::is_retryable(e)
                        || backup_kube::errors::status_code(e) == Some(422)
                }
                _ => false,
            },
            Error::Encode { .. } => false,
        }
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
