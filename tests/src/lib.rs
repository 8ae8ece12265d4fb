//! Test harness for the real local control plane (`cargo xtask env up`): per-cluster etcd,
//! kube-apiserver and kube-controller-manager on 127.0.0.1, plus an S3 server and Azure Blob
//! Storage (Azurite).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let env = tests::env::shared()?;
//! let c1 = env.client("c1").await?;
//! let ns = tests::namespace::TestNamespace::create(&c1, "my_test").await?;
//! // ... work in ns.name ...
//! ns.delete().await?;
//! # Ok(()) }
//! ```

/// The `backup-controller` binary cargo built for this package's tests (only the controller's
/// own test targets have it): `tests::controller_bin!()`.
#[macro_export]
macro_rules! controller_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_backup-controller"))
    };
}

pub mod age;
pub mod cli;
pub mod controller;
pub mod env;
pub mod helm;
pub mod namespace;
pub mod velero;

// The local control plane's state and the helpers that reach it live in `backup-localenv`,
// shared with xtask; these keep their old paths (`tests::env_state::EnvState`, ...).
pub use backup_localenv::{browser, crds, env_state, lock};

pub use env::{TestEnv, shared};
pub use namespace::{TestNamespace, unique_name};
