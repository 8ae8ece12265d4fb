//! The local control plane (`cargo xtask env up`: per-cluster etcd, kube-apiserver and
//! kube-controller-manager on 127.0.0.1, an S3 server, Azurite) as both sides of it need it.
//!
//! Two crates meet the local control plane: `xtask`, which starts, repairs and stops it and
//! drives the demo and benchmarks against it, and `tests`, whose suites run against it. Both need
//! the same things about it: its recorded state (`env.json`, written by one and read by the
//! other, so it is defined once, here), where its directory is, a client for one of its
//! clusters, its lock files, and a few helpers that reach it (installing CRDs, loopback HTTP, a
//! headless browser, unique names). They live here rather than in the test harness so that the
//! tooling does not depend on the tests (see the README's crate map).

pub mod browser;
pub mod crds;
pub mod env;
pub mod env_state;
pub mod http;
pub mod lock;
pub mod names;
pub mod wait;

pub use names::unique_name;
pub use wait::wait_until;
