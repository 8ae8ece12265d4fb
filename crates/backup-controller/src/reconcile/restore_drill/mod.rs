//! RestoreDrill (WORK IN PROGRESS, issue 24): only the pure plan exists yet; no reconciler
//! runs it and the kind is not registered.

pub mod plan;
