//! A spec field the controller cannot use, named by its path, with what to write instead.
//!
//! Specs are accepted by the apiserver as text (schedules, durations, selectors) and checked
//! here, so a mistake becomes a `Ready=False, reason InvalidSpec` condition whose message a
//! user can act on, instead of an object the controller cannot even read.

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    /// The field's path, e.g. `spec.retention.keep`.
    pub field: String,
    /// Why it is invalid and what to write instead.
    pub message: String,
}

impl InvalidField {
    /// An invalid `field`, explained by `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }
}
