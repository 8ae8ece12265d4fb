//! Kubernetes made usable for the other crates, in one place: a client from a kubeconfig (with
//! the self-contained rule for kubeconfigs from Secrets and every address checked), the one
//! classification of API errors, discovery of what a cluster serves, and a StorageLocation
//! object opened as a [`backup_storage::Repository`] with the project's own credentials under
//! the tenancy rules.
//!
//! The controller, `backupctl` (its etcd agent opens locations exactly as the controller does)
//! and the engines of `backup-velero` depend on it; it depends on none of them.

pub mod discovery;
pub mod errors;
pub mod kubeconfig;
pub mod locations;
pub mod secrets;
pub mod tenancy;

/// An object's namespace and name.
pub type NamespacedName = (String, String);
