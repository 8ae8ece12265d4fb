//! The management-cluster controller of the fleet backup system.
//!
//! It owns our API (`backupfleet.dev/v1alpha1`, see [`api`]): storage locations, the managed
//! clusters of each project, and fleet backups on schedules. Each kind has a reconciler made of
//! a pure plan and a thin layer of I/O ([`reconcile`]); engines from `backup-velero` do the work
//! on each user cluster. Only the leader of a Lease reconciles ([`lease`]); every replica serves
//! health and metrics ([`admin`]).

pub mod access;
pub mod admin;
pub mod admission;
pub mod clock;
pub mod clusters;
pub mod context;
pub mod error;
pub mod lease;
pub mod metrics;
pub mod reconcile;
pub mod runs;
pub mod runtime;
pub mod telemetry;
pub mod tls;
pub mod web;

pub use error::Error;

pub use backup_kube::NamespacedName;
