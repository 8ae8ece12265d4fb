//! Domain types and rules of the fleet backup system, with no I/O.
//!
//! This crate is what every other crate agrees on: storage location specs, resource filters,
//! backup/schedule/restore specs and phases, schedule parsing (5-field cron, `@daily`-style
//! nicknames, `@every <duration>`), retention planning, object naming, Velero's restore order,
//! and the engine traits adapters implement for one cluster.
//!
//! It performs no I/O, reads no clock and depends on no Kubernetes or object-store client, so
//! every rule is a pure function that the controller, CLI and storage crate share and that can
//! be tested exhaustively. Invalid input is reported through `thiserror` enums whose messages
//! name the bad value and what is accepted; nothing here panics on user input.

mod cron_field;
pub mod duration;
pub mod engine;
pub mod filter;
pub mod location;
pub mod location_options;
pub mod naming;
pub mod network;
pub mod phase;
pub mod privilege;
pub mod resource_modifiers;
pub mod retention;
pub mod schedule;
pub mod selector;
pub mod size;
pub mod spec;
pub mod velero_data;

pub use duration::{DurationError, GoDuration, Ttl, TtlError, format_go_duration, parse_duration};
pub use engine::{
    BackupEngine, BackupStatus, EngineError, RestoreEngine, RestoreStatus, StoredBackup,
};
pub use filter::{FilterError, GroupResource, ItemRef, ResourceFilter};
pub use location::{AccessMode, CredentialRef, FILE_PROVIDER, LocationError, StorageLocationSpec};
pub use naming::{
    NameError, sanitize, scheduled_backup_name, validate_dns1123_label, validate_dns1123_subdomain,
};
pub use phase::{Phase, Progress, UnknownPhase};
pub use retention::{
    GfsPolicy, KeepCount, RetentionCandidate, RetentionError, RetentionPolicy, plan_deletions,
};
pub use schedule::{Schedule, ScheduleError};
pub use selector::{LabelSelector, Operator, Requirement, SelectorError};
pub use size::human_bytes;
pub use spec::{
    BackupKind, BackupSpec, ExistingResourcePolicy, LEGACY_VELERO_DIRS, RestoreOptions,
    RestoreSpec, RestoreStatusSpec, ScheduleSpec, SpecError, VELERO_DIR,
};
