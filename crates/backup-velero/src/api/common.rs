//! Pieces shared by several Velero kinds: string enums that keep unknown values, label
//! selectors, object references and the schema helpers that keep unknown fields alive.
//!
//! Velero adds fields and phases in minor releases. Everything here is built so that an object
//! written by a newer Velero survives our read-modify-write unchanged: enums keep unknown
//! strings verbatim and objects keep unknown keys in a flattened `extra` map.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Declares a string enum whose unknown values are kept verbatim in `Other`, so a phase or kind
/// added by a newer Velero is neither rejected nor lost when we write the object back.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know (from a newer Velero), kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every value Velero documents, in Velero's spelling.
            pub const KNOWN: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// Velero's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $(stringify!($variant) => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                // No `enum` constraint: values from newer Velero versions must be accepted.
                let description = format!("One of: {}.", $name::KNOWN.join(", "));
                schemars::json_schema!({"type": "string", "description": description})
            }
        }
    };
}
pub(crate) use string_enum;

/// Unknown fields of an object, kept so a read-modify-write does not drop what a newer Velero
/// wrote. The CRD schema marks such objects `x-kubernetes-preserve-unknown-fields`.
pub type Extra = BTreeMap<String, serde_json::Value>;

/// Schema for opaque JSON objects (hooks, uploader configs) whose shape we do not interpret.
pub fn opaque_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// Marks an object schema as keeping unknown fields, for objects that have no known fields
/// (kube's rewriter only does this for flattened maps next to declared properties).
pub fn preserve_unknown(schema: &mut Schema) {
    schema.remove("additionalProperties");
    schema.insert(
        "x-kubernetes-preserve-unknown-fields".into(),
        serde_json::Value::Bool(true),
    );
}

/// Schema for RFC 3339 timestamps (`metav1.Time`).
pub fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time", "nullable": true})
}

/// Schema for byte fields (`[]byte`, base64 in JSON).
pub fn bytes(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "byte"})
}

/// One `matchExpressions` entry of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In`/`NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `metav1.LabelSelector`, as Velero's `labelSelector`/`orLabelSelectors` use it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Exact matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// `corev1.TypedLocalObjectReference`: Velero's `resourcePolicy` and `resourceModifier` refs
/// (a ConfigMap in the Velero namespace).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    /// API group of the referent; absent for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind of the referent, e.g. `configmap`.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
}

/// `corev1.SecretKeySelector`: where a BSL's credentials are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeySelector {
    /// Secret name (in the Velero namespace).
    pub name: String,
    /// Key inside the secret.
    pub key: String,
    /// Whether the secret may be missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Labels put into a Velero object's `metadata`-like template (Schedule template, Backup spec).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ObjectLabels {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Velero's hook execution counters (`status.hookStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// Hooks attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks_attempted: Option<i64>,
    /// Hooks that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks_failed: Option<i64>,
    /// Fields from newer Velero versions.
    #[serde(flatten)]
    pub extra: Extra,
}
