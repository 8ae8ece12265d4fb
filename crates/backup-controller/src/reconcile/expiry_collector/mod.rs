//! The expiry collector: a backup's TTL holds whoever wrote it and whether or not its schedule
//! still runs. [`plan`] decides what one cluster scope loses.

pub mod plan;
