//! Kubernetes label selectors (`metav1.LabelSelector`) and kubectl's `-l` string syntax.
//!
//! Velero's `labelSelector`/`orLabelSelectors` and k0rdent's backup selection use exactly this
//! type, so it mirrors its JSON (`matchLabels`, `matchExpressions`) and semantics: all
//! requirements must hold; `NotIn` and `DoesNotExist` also match when the key is absent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum Operator {
    /// Value is one of `values`.
    In,
    /// Key absent, or value not one of `values`.
    NotIn,
    /// Key present.
    Exists,
    /// Key absent.
    DoesNotExist,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values for `In`/`NotIn`; must be empty for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label selector. The empty selector matches everything, as in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Exact key=value matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// Why a selector (string or structured) is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A requirement in the string form that is not `k=v`, `k!=v`, `k in (..)`, `k notin (..)`, `k` or `!k`.
    #[error(
        "label selector {selector:?}: cannot parse {part:?}: {reason}; accepted forms are k=v, k==v, k!=v, \"k in (a,b)\", \"k notin (a,b)\", k and !k"
    )]
    Syntax {
        /// The full selector string.
        selector: String,
        /// The offending requirement.
        part: String,
        /// What is wrong.
        reason: String,
    },
    /// A key that is not a valid Kubernetes label key.
    #[error(
        "label key {key:?} is invalid: use an optional DNS prefix and '/' then a name of up to 63 characters [A-Za-z0-9_.-] starting and ending alphanumeric"
    )]
    InvalidKey {
        /// The rejected key.
        key: String,
    },
    /// A value that is not a valid Kubernetes label value.
    #[error(
        "label value {value:?} (key {key:?}) is invalid: up to 63 characters [A-Za-z0-9_.-], starting and ending alphanumeric, or empty"
    )]
    InvalidValue {
        /// The key it belongs to.
        key: String,
        /// The rejected value.
        value: String,
    },
    /// `In`/`NotIn` without values or `Exists`/`DoesNotExist` with values.
    #[error("label selector requirement on {key:?}: operator {operator:?} {reason}")]
    BadValues {
        /// The key.
        key: String,
        /// The operator.
        operator: Operator,
        /// What is wrong.
        reason: &'static str,
    },
}

fn is_name_part(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(alnum)
        && s.chars().last().is_some_and(alnum)
}

/// Validates a label key: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let err = || SelectorError::InvalidKey {
        key: key.to_string(),
    };
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            crate::naming::validate_dns1123_subdomain(prefix).map_err(|_| err())?;
            name
        }
        None => key,
    };
    if is_name_part(name) {
        Ok(())
    } else {
        Err(err())
    }
}

/// Validates a label value (may be empty).
pub fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(SelectorError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            Operator::In => v.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => v.is_some(),
            Operator::DoesNotExist => v.is_none(),
        }
    }
}

impl LabelSelector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Checks keys, values and operator/values consistency like the API server would.
    pub fn validate(&self) -> Result<(), SelectorError> {
        for (k, v) in &self.match_labels {
            validate_label_key(k)?;
            validate_label_value(k, v)?;
        }
        for r in &self.match_expressions {
            validate_label_key(&r.key)?;
            let bad = |reason| SelectorError::BadValues {
                key: r.key.clone(),
                operator: r.operator,
                reason,
            };
            match r.operator {
                Operator::In | Operator::NotIn if r.values.is_empty() => {
                    return Err(bad("needs at least one value"));
                }
                Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
                    return Err(bad("must not have values"));
                }
                _ => {}
            }
            for v in &r.values {
                validate_label_value(&r.key, v)?;
            }
        }
        Ok(())
    }

    /// Parses kubectl's selector syntax: `k=v,k2!=v2,k3 in (a,b),k4 notin (c),k5,!k6`.
    pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
        let mut out = LabelSelector::default();
        for part in split_top_level(selector) {
            let part = part.trim();
            let syntax = |reason: &str| SelectorError::Syntax {
                selector: selector.to_string(),
                part: part.to_string(),
                reason: reason.to_string(),
            };
            if part.is_empty() {
                if selector.trim().is_empty() {
                    continue;
                }
                return Err(syntax("empty requirement"));
            }
            let req = parse_requirement(part).map_err(|r| syntax(&r))?;
            match req {
                Parsed::Equals(k, v) => {
                    validate_label_key(&k)?;
                    validate_label_value(&k, &v)?;
                    match out.match_labels.get(&k) {
                        Some(old) if *old != v => out.match_expressions.push(Requirement {
                            key: k,
                            operator: Operator::In,
                            values: vec![v],
                        }),
                        _ => {
                            out.match_labels.insert(k, v);
                        }
                    }
                }
                Parsed::Req(r) => out.match_expressions.push(r),
            }
        }
        out.validate()?;
        Ok(out)
    }
}

enum Parsed {
    Equals(String, String),
    Req(Requirement),
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Parsed, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        if key.is_empty() || key.contains(|c: char| "=!() ".contains(c)) {
            return Err("expected a key after '!'".into());
        }
        return Ok(Parsed::Req(Requirement {
            key: key.into(),
            operator: Operator::DoesNotExist,
            values: vec![],
        }));
    }
    if part.contains('<') || part.contains('>') {
        return Err("'<' and '>' are not supported by label selectors in objects".into());
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Parsed::Req(Requirement {
            key: k.trim().into(),
            operator: Operator::NotIn,
            values: vec![v.trim().into()],
        }));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        if v.contains('=') {
            return Err("more than one '='".into());
        }
        return Ok(Parsed::Equals(k.trim().into(), v.trim().into()));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or("").trim();
    let rest = words.next().unwrap_or("").trim();
    if rest.is_empty() {
        if key.contains(['(', ')']) {
            return Err("unexpected parenthesis".into());
        }
        return Ok(Parsed::Req(Requirement {
            key: key.into(),
            operator: Operator::Exists,
            values: vec![],
        }));
    }
    let (operator, list) = if let Some(l) = rest.strip_prefix("notin") {
        (Operator::NotIn, l)
    } else if let Some(l) = rest.strip_prefix("in") {
        (Operator::In, l)
    } else {
        return Err(format!("unknown operator in {rest:?}"));
    };
    let list = list.trim();
    let inner = list
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| "values must be in parentheses, e.g. (a,b)".to_string())?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Err("empty value list".into());
    }
    Ok(Parsed::Req(Requirement {
        key: key.into(),
        operator,
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_all_forms() {
        let s = LabelSelector::parse(
            "app=web, tier!=db,env in (prod, staging),!legacy,team,x notin (a)",
        )
        .unwrap();
        assert_eq!(s.match_labels, labels(&[("app", "web")]));
        assert_eq!(s.match_expressions.len(), 5);
        assert_eq!(s.match_expressions[1].values, vec!["prod", "staging"]);
        let good = labels(&[("app", "web"), ("env", "prod"), ("team", "a")]);
        assert!(s.matches(&good));
        let mut bad = good.clone();
        bad.insert("legacy".into(), "true".into());
        assert!(!s.matches(&bad));
        let mut bad = good.clone();
        bad.insert("tier".into(), "db".into());
        assert!(!s.matches(&bad));
        let mut bad = good.clone();
        bad.insert("env".into(), "dev".into());
        assert!(!s.matches(&bad));
        let mut bad = good;
        bad.remove("team");
        assert!(!s.matches(&bad));
    }

    #[test]
    fn empty_matches_everything() {
        let s = LabelSelector::parse("").unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn double_equals_and_prefixed_keys() {
        let s = LabelSelector::parse("app.kubernetes.io/name==web").unwrap();
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "web")])));
    }

    #[test]
    fn syntax_errors_name_the_part() {
        for bad in [
            "a in b",
            "a in ()",
            "a>1",
            "=v",
            "a,,b",
            "a=b=c",
            "a foo (x)",
            "! ",
        ] {
            let e = LabelSelector::parse(bad).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(
                    e,
                    SelectorError::Syntax { .. } | SelectorError::InvalidKey { .. }
                ),
                "{bad}: {e:?}"
            );
            assert!(
                msg.contains(bad.trim().trim_start_matches('!').trim()) || msg.contains("\"\""),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn invalid_key_and_value() {
        let e = LabelSelector::parse("-a=b").unwrap_err();
        assert!(matches!(&e, SelectorError::InvalidKey { key } if key == "-a"));
        let e = LabelSelector::parse("a=b c").unwrap_err();
        assert!(matches!(&e, SelectorError::InvalidValue { value, .. } if value == "b c"));
        assert!(e.to_string().contains("b c"));
    }

    #[test]
    fn structured_validation() {
        let s = LabelSelector {
            match_expressions: vec![Requirement {
                key: "a".into(),
                operator: Operator::In,
                values: vec![],
            }],
            ..LabelSelector::default()
        };
        assert!(matches!(s.validate(), Err(SelectorError::BadValues { .. })));
        let s = LabelSelector {
            match_expressions: vec![Requirement {
                key: "a".into(),
                operator: Operator::Exists,
                values: vec!["x".into()],
            }],
            ..LabelSelector::default()
        };
        assert!(matches!(s.validate(), Err(SelectorError::BadValues { .. })));
    }

    #[test]
    fn serde_matches_kubernetes() {
        let s: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"a":"b"},"matchExpressions":[{"key":"c","operator":"NotIn","values":["d"]}]}"#,
        )
        .unwrap();
        assert!(s.matches(&labels(&[("a", "b")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("c", "d")])));
    }
}
