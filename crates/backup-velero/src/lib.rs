//! Velero's formats and the engines that produce them.
//!
//! Everything we write to storage must be readable by Velero and everything Velero writes must be
//! readable by us, so the exact layout lives here, in one place, as data and pure functions.

pub mod api;
pub mod direct;
pub mod format;
pub mod in_cluster;
pub mod tarball_layout;

pub use tarball_layout::{ItemPath, LayoutError};
