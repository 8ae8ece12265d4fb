//! JSON-schema helpers for fields whose Rust type has no schema of its own.

use schemars::{Schema, SchemaGenerator, json_schema};

/// RFC 3339 timestamps (`metav1.Time`), serialised by jiff.
pub fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time"})
}

/// Optional RFC 3339 timestamps.
pub fn optional_date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time", "nullable": true})
}
