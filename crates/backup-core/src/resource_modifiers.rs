//! Velero's restore resource modifiers (format `version: v1`): rules that change objects as
//! they are restored, each with conditions (group-resource glob, namespaces, name regex, label
//! selector, value matches) and either JSON patches (RFC 6902) or JSON merge patches
//! (RFC 7386).
//!
//! Implemented once here, with Velero's semantics as its source has them: every rule is matched
//! against the object as it was in the backup (before namespace mapping), rules apply in order,
//! a failing `test` operation leaves the object unchanged, a patch `value` is JSON when it reads
//! as a number, boolean, null, object or array and a string otherwise (quote it to force a
//! string). Strategic merge patches need the Kubernetes schema and are refused with a pointer
//! to the other two kinds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::filter::glob_match;
use crate::selector::LabelSelector;

/// The only format version.
pub const VERSION_V1: &str = "v1";

/// A resource-modifier document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceModifiers {
    /// `v1`.
    pub version: String,
    /// The rules, applied in order.
    pub resource_modifier_rules: Vec<ModifierRule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModifierRule {
    /// Which objects.
    pub conditions: Conditions,
    /// JSON patch operations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<JsonPatchOp>,
    /// JSON merge patches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_patches: Vec<PatchData>,
    /// Strategic merge patches (refused: see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strategic_patches: Vec<PatchData>,
}

/// Which objects a rule changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    /// `resource.group` glob (`deployments.apps`, `*.apps`, `configmaps`); `*` stops at dots.
    pub group_resource: String,
    /// Namespaces (globs) of namespaced objects; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// A regular expression the object's name must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name_regex: Option<String>,
    /// A label selector the object's labels must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Values the object must hold (each a JSON `test` at `path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchRule>,
}

/// A value the object must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// JSON pointer.
    pub path: String,
    /// The value (read as a patch value is).
    #[serde(default)]
    pub value: String,
}

/// One JSON patch operation, as Velero writes it (the value as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonPatchOp {
    /// `add`, `remove`, `replace`, `move`, `copy` or `test`.
    pub operation: String,
    /// Source pointer of `move` and `copy`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Target pointer.
    pub path: String,
    /// The value (see the module docs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// A merge patch, as YAML or JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchData {
    /// The patch document.
    pub patch_data: String,
}

/// Why a resource-modifier document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource modifiers: {0}")]
pub struct ModifierError(pub String);

/// A document checked and compiled, ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledModifiers {
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    conditions: Conditions,
    name_regex: Option<regex::Regex>,
    matches: Option<json_patch::Patch>,
    change: Change,
}

#[derive(Debug, Clone)]
enum Change {
    Json(json_patch::Patch),
    Merge(Vec<Value>),
}

impl ResourceModifiers {
    /// Parses a YAML (or JSON) document, refusing unknown fields, and checks it.
    pub fn parse(text: &str) -> Result<CompiledModifiers, ModifierError> {
        let document: ResourceModifiers = serde_yaml_ng::from_str(text)
            .map_err(|e| ModifierError(format!("not a resource-modifier document: {e}")))?;
        document.compile()
    }

    /// Checks every rule and compiles its patterns and patches.
    pub fn compile(&self) -> Result<CompiledModifiers, ModifierError> {
        if !self.version.eq_ignore_ascii_case(VERSION_V1) {
            return Err(ModifierError(format!(
                "version {:?} is not supported: use version: v1",
                self.version
            )));
        }
        if self.resource_modifier_rules.is_empty() {
            return Err(ModifierError("resourceModifierRules is empty".into()));
        }
        let rules = self
            .resource_modifier_rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                rule.compile()
                    .map_err(|e| ModifierError(format!("rule {}: {e}", i + 1)))
            })
            .collect::<Result<_, _>>()?;
        Ok(CompiledModifiers { rules })
    }
}

impl ModifierRule {
    fn compile(&self) -> Result<CompiledRule, String> {
        let c = &self.conditions;
        if c.group_resource.is_empty() {
            return Err(
                "conditions.groupResource is empty: name the resource, e.g. \
                        deployments.apps or *"
                    .into(),
            );
        }
        let name_regex = c
            .resource_name_regex
            .as_deref()
            .map(|r| {
                regex::Regex::new(r).map_err(|e| format!("conditions.resourceNameRegex {r:?}: {e}"))
            })
            .transpose()?;
        if let Some(selector) = &c.label_selector {
            selector
                .validate()
                .map_err(|e| format!("conditions.labelSelector: {e}"))?;
        }
        let matches = if c.matches.is_empty() {
            None
        } else {
            let ops: Vec<Value> = c
                .matches
                .iter()
                .map(|m| {
                    if m.path.is_empty() {
                        return Err("conditions.matches: path is required".to_string());
                    }
                    Ok(serde_json::json!({"op": "test", "path": m.path, "value": patch_value(&m.value)}))
                })
                .collect::<Result<_, _>>()?;
            Some(
                serde_json::from_value(Value::Array(ops))
                    .map_err(|e| format!("conditions.matches: {e}"))?,
            )
        };
        let kinds = [
            !self.patches.is_empty(),
            !self.merge_patches.is_empty(),
            !self.strategic_patches.is_empty(),
        ];
        let change = match kinds {
            [true, false, false] => {
                let ops: Vec<Value> = self.patches.iter().map(json_op).collect::<Result<_, _>>()?;
                Change::Json(
                    serde_json::from_value(Value::Array(ops))
                        .map_err(|e| format!("patches: {e}"))?,
                )
            }
            [false, true, false] => Change::Merge(
                self.merge_patches
                    .iter()
                    .map(|p| {
                        serde_yaml_ng::from_str::<Value>(&p.patch_data).map_err(|e| {
                            format!("mergePatches: patchData is not YAML or JSON: {e}")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            [false, false, true] => {
                return Err(
                    "strategicPatches are not supported (they need the Kubernetes \
                            schema of every kind): write the change as patches (JSON patch) or \
                            mergePatches (JSON merge patch)"
                        .into(),
                );
            }
            [false, false, false] => {
                return Err("no change: set patches or mergePatches".into());
            }
            _ => {
                return Err("set only one of patches, mergePatches and strategicPatches".into());
            }
        };
        Ok(CompiledRule {
            conditions: c.clone(),
            name_regex,
            matches,
            change,
        })
    }
}

/// One Velero patch operation as RFC 6902 JSON.
fn json_op(op: &JsonPatchOp) -> Result<Value, String> {
    let name = op.operation.to_ascii_lowercase();
    if !["add", "remove", "replace", "move", "copy", "test"].contains(&name.as_str()) {
        return Err(format!(
            "patches: operation {:?} is not one of add, remove, replace, move, copy, test",
            op.operation
        ));
    }
    if op.path.is_empty() {
        return Err(format!("patches: {name} needs a path"));
    }
    let mut value = serde_json::json!({"op": name, "path": op.path});
    match name.as_str() {
        "move" | "copy" => value["from"] = Value::String(op.from.clone()),
        "add" | "replace" | "test" => value["value"] = patch_value(&op.value),
        _ => {}
    }
    Ok(value)
}

/// A patch value as Velero reads its text: null, booleans, numbers, objects and arrays as
/// JSON; a quoted text as the text inside; anything else as a string.
pub fn patch_value(text: &str) -> Value {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        return Value::String(text[1..text.len() - 1].to_string());
    }
    let lower = text.to_ascii_lowercase();
    let json_like = text == "null"
        || lower == "true"
        || lower == "false"
        || text.starts_with('{')
        || text.starts_with('[')
        || text.parse::<f64>().is_ok();
    if json_like && let Ok(value) = serde_json::from_str(&lower_if_bool(text, &lower)) {
        return value;
    }
    Value::String(text.to_string())
}

fn lower_if_bool(text: &str, lower: &str) -> String {
    if lower == "true" || lower == "false" {
        lower.to_string()
    } else {
        text.to_string()
    }
}

impl CompiledModifiers {
    /// Applies every matching rule to `object` (as it is in the backup) of `group_resource`
    /// (`deployments.apps`, `configmaps`); returns the rules' errors (the object keeps the
    /// changes of the rules that worked).
    pub fn apply(&self, object: &mut Value, group_resource: &str) -> Vec<String> {
        let original = object.clone();
        let mut errors = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.selects(&original, group_resource) {
                continue;
            }
            if let Err(e) = rule.change(object) {
                errors.push(format!("resource modifier rule {}: {e}", i + 1));
            }
        }
        errors
    }
}

impl CompiledRule {
    fn selects(&self, object: &Value, group_resource: &str) -> bool {
        let metadata = &object["metadata"];
        if let Some(ns) = metadata["namespace"].as_str().filter(|ns| !ns.is_empty())
            && !self.conditions.namespaces.is_empty()
            && !self.conditions.namespaces.iter().any(|p| glob_match(p, ns))
        {
            return false;
        }
        if !group_resource_match(&self.conditions.group_resource, group_resource) {
            return false;
        }
        if let Some(regex) = &self.name_regex
            && !regex.is_match(metadata["name"].as_str().unwrap_or_default())
        {
            return false;
        }
        if let Some(selector) = &self.conditions.label_selector {
            let labels = metadata["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if !selector.matches(&labels) {
                return false;
            }
        }
        match &self.matches {
            None => true,
            Some(tests) => {
                let mut probe = object.clone();
                json_patch::patch(&mut probe, tests).is_ok()
            }
        }
    }

    fn change(&self, object: &mut Value) -> Result<(), String> {
        match &self.change {
            Change::Json(patch) => match json_patch::patch(object, patch) {
                Ok(()) => Ok(()),
                // Velero: a failed test leaves the object as it was, and is no error.
                Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => Ok(()),
                Err(e) => Err(format!("JSON patch: {e}")),
            },
            Change::Merge(patches) => {
                for patch in patches {
                    json_patch::merge(object, patch);
                }
                Ok(())
            }
        }
    }
}

/// Velero's groupResource glob: `*` and `?` do not cross dots, `**` does.
fn group_resource_match(pattern: &str, group_resource: &str) -> bool {
    if pattern.contains("**") {
        return glob_match(&pattern.replace("**", "*"), group_resource);
    }
    let parts: Vec<&str> = pattern.split('.').collect();
    let names: Vec<&str> = group_resource.split('.').collect();
    parts.len() == names.len() && parts.iter().zip(&names).all(|(p, n)| glob_match(p, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "mysql-main", "namespace": "shop", "labels": {"app": "db", "test": "x"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "db", "image": "mysql:8"}]}}}
        })
    }

    #[test]
    fn the_velero_doc_example_changes_what_it_names() {
        let m = ResourceModifiers::parse(
            r#"
version: v1
resourceModifierRules:
- conditions:
    groupResource: deployments.apps
    resourceNameRegex: "^mysql.*$"
    namespaces: [bar, shop]
    labelSelector:
      matchLabels: {app: db}
  patches:
  - operation: replace
    path: "/spec/replicas"
    value: "1"
  - operation: remove
    path: "/metadata/labels/test"
  - operation: add
    path: "/metadata/annotations"
    value: '{"restored": "true"}'
"#,
        )
        .unwrap();
        let mut obj = deployment();
        assert!(m.apply(&mut obj, "deployments.apps").is_empty());
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["metadata"]["labels"], json!({"app": "db"}));
        assert_eq!(obj["metadata"]["annotations"]["restored"], "true");
    }

    #[test]
    fn objects_outside_the_conditions_are_left_alone() {
        let rule = |conditions: &str| {
            ResourceModifiers::parse(&format!(
                "version: v1\nresourceModifierRules:\n- conditions: {conditions}\n  patches:\n  - {{operation: replace, path: /spec/replicas, value: \"0\"}}\n"
            ))
            .unwrap()
        };
        for (conditions, gr) in [
            (
                "{groupResource: deployments.apps, namespaces: [other]}",
                "deployments.apps",
            ),
            ("{groupResource: statefulsets.apps}", "deployments.apps"),
            ("{groupResource: '*'}", "deployments.apps"),
            (
                "{groupResource: deployments.apps, resourceNameRegex: '^web'}",
                "deployments.apps",
            ),
            (
                "{groupResource: deployments.apps, labelSelector: {matchLabels: {app: web}}}",
                "deployments.apps",
            ),
            (
                "{groupResource: deployments.apps, matches: [{path: /spec/replicas, value: '5'}]}",
                "deployments.apps",
            ),
        ] {
            let mut obj = deployment();
            assert!(
                rule(conditions).apply(&mut obj, gr).is_empty(),
                "{conditions}"
            );
            assert_eq!(obj, deployment(), "{conditions} must not select it");
        }
        for conditions in [
            "{groupResource: '*.apps'}",
            "{groupResource: '**'}",
            "{groupResource: deployments.apps, namespaces: ['sh*']}",
            "{groupResource: deployments.apps, matches: [{path: /spec/replicas, value: '3'}]}",
        ] {
            let mut obj = deployment();
            rule(conditions).apply(&mut obj, "deployments.apps");
            assert_eq!(obj["spec"]["replicas"], 0, "{conditions} selects it");
        }
    }

    #[test]
    fn merge_patches_and_values_read_as_velero_reads_them() {
        let m = ResourceModifiers::parse(
            "version: v1\nresourceModifierRules:\n- conditions: {groupResource: deployments.apps}\n  mergePatches:\n  - patchData: |\n      metadata: {labels: {test: null, tier: gold}}\n",
        )
        .unwrap();
        let mut obj = deployment();
        m.apply(&mut obj, "deployments.apps");
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"app": "db", "tier": "gold"})
        );
        assert_eq!(patch_value("3"), json!(3));
        assert_eq!(patch_value("True"), json!(true));
        assert_eq!(patch_value("null"), json!(null));
        assert_eq!(patch_value("\"3\""), json!("3"));
        assert_eq!(patch_value("premium"), json!("premium"));
        assert_eq!(patch_value("[1, 2]"), json!([1, 2]));
    }

    #[test]
    fn a_failed_test_leaves_the_object_and_other_errors_are_reported() {
        let m = ResourceModifiers::parse(
            "version: v1\nresourceModifierRules:\n- conditions: {groupResource: deployments.apps}\n  patches:\n  - {operation: test, path: /spec/replicas, value: \"9\"}\n  - {operation: replace, path: /spec/replicas, value: \"1\"}\n- conditions: {groupResource: deployments.apps}\n  patches:\n  - {operation: replace, path: /spec/missing/field, value: x}\n",
        )
        .unwrap();
        let mut obj = deployment();
        let errors = m.apply(&mut obj, "deployments.apps");
        assert_eq!(obj["spec"]["replicas"], 3, "the test failed: unchanged");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("resource modifier rule 2"),
            "{errors:?}"
        );
    }

    #[test]
    fn malformed_documents_say_what_is_wrong() {
        for (text, expected) in [
            ("version: v2\nresourceModifierRules: []\n", "version"),
            ("version: v1\nresourceModifierRules: []\n", "empty"),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: ''}\n  patches: [{operation: remove, path: /a}]\n",
                "groupResource",
            ),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: x}\n  patches: [{operation: frobnicate, path: /a}]\n",
                "frobnicate",
            ),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: x, resourceNameRegex: '('}\n  patches: [{operation: remove, path: /a}]\n",
                "resourceNameRegex",
            ),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: x}\n  strategicPatches: [{patchData: 'a: b'}]\n",
                "strategicPatches",
            ),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: x}\n",
                "no change",
            ),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: x}\n  patches: [{operation: remove, path: /a}]\n  mergePatches: [{patchData: 'a: b'}]\n",
                "only one",
            ),
            (
                "version: v1\nresourceModifierRules:\n- conditions: {groupResource: x, colour: red}\n  patches: [{operation: remove, path: /a}]\n",
                "colour",
            ),
        ] {
            let e = ResourceModifiers::parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
