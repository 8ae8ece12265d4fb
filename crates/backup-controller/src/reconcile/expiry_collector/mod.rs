//! The expiry collector: a backup's TTL holds whoever wrote it and whether or not its schedule
//! still runs. [`plan`] decides what one cluster scope loses; [`report`] tells people.

pub mod plan;
pub mod report;
