//! Whether a restored object is what its backup holds: every field of the object as the
//! restore sent it ([`super::sanitize::prepare`]'s output) must be in the object the target
//! cluster now serves, with the same value. The API server may add (defaults, its own
//! metadata) but nothing may be lost or changed.
//!
//! What the API server is known to rewrite without changing the meaning is not a difference:
//! a `null` or an empty map or list it leaves out, and a resource quantity it writes in its
//! canonical form (`1000m` is served as `1`, `1024Mi` as `1Gi`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Mismatches a [`Verification`] keeps with their problem; the rest are only counted, so a
/// backup with many broken objects does not grow the drill's memory or its status.
pub const MISMATCHES_KEPT: usize = 10;
/// Differences of one object quoted in its mismatch.
const DIFFERENCES_QUOTED: usize = 3;

/// What reading a restore back found: per resource, the objects the restore should create
/// and those the target serves as the backup holds them, and the first mismatches.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Per resource (`configmaps`, `deployments.apps`).
    pub by_resource: BTreeMap<String, ResourceCount>,
    /// Objects missing, refused or changed.
    pub mismatched: u64,
    /// The first [`MISMATCHES_KEPT`] of them.
    pub mismatches: Vec<Mismatch>,
}

/// One resource's objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResourceCount {
    /// Planned: the restore should create them.
    pub expected: u64,
    /// Read back with every field the restore sent.
    pub verified: u64,
}

/// An object that is not what its backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// `resource namespace/name` as restored.
    pub object: String,
    /// What is wrong: the refusal, or the first differences.
    pub problem: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

impl Verification {
    /// An object of `resource` the restore should create.
    pub fn expect(&mut self, resource: &str) {
        self.count(resource).expected += 1;
    }

    /// An object of `resource` read back as sent.
    pub fn verified(&mut self, resource: &str) {
        self.count(resource).verified += 1;
    }

    /// An object that is missing, refused or changed, with why.
    pub fn mismatch(&mut self, object: String, problem: String) {
        self.mismatched += 1;
        if self.mismatches.len() < MISMATCHES_KEPT {
            self.mismatches.push(Mismatch { object, problem });
        }
    }

    /// An object read back with `found` differences (none: verified).
    pub fn compared(&mut self, resource: &str, object: String, found: &[Difference]) {
        if found.is_empty() {
            return self.verified(resource);
        }
        let mut problem: Vec<String> = found
            .iter()
            .take(DIFFERENCES_QUOTED)
            .map(Difference::to_string)
            .collect();
        if found.len() > DIFFERENCES_QUOTED {
            problem.push(format!("and {} more", found.len() - DIFFERENCES_QUOTED));
        }
        self.mismatch(object, problem.join("; "));
    }

    /// Objects the restore should create.
    pub fn expected(&self) -> u64 {
        self.by_resource.values().map(|c| c.expected).sum()
    }

    /// Objects read back as sent.
    pub fn verified_total(&self) -> u64 {
        self.by_resource.values().map(|c| c.verified).sum()
    }

    /// Whether every object was read back as sent and the counts by resource match.
    pub fn holds(&self) -> bool {
        self.mismatched == 0 && self.by_resource.values().all(|c| c.expected == c.verified)
    }

    fn count(&mut self, resource: &str) -> &mut ResourceCount {
        self.by_resource.entry(resource.to_string()).or_default()
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Where, as a JSON pointer (`/spec/replicas`).
    pub path: String,
    /// What the backup holds there.
    pub expected: Value,
    /// What the cluster serves there (`None`: nothing).
    pub actual: Option<Value>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.actual {
            Some(actual) => write!(
                f,
                "{}: the backup holds {}, the cluster serves {actual}",
                self.path, self.expected
            ),
            None => write!(
                f,
                "{}: the backup holds {}, the cluster serves nothing",
                self.path, self.expected
            ),
        }
    }
}

/// Every field of `expected` that `actual` lacks or holds differently, in key order.
pub fn differences(expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut found = Vec::new();
    walk(expected, Some(actual), &mut String::new(), &mut found);
    found
}

fn walk(expected: &Value, actual: Option<&Value>, path: &mut String, found: &mut Vec<Difference>) {
    let differ = |found: &mut Vec<Difference>, path: &str| {
        found.push(Difference {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            expected: expected.clone(),
            actual: actual.cloned(),
        })
    };
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Object(e), None) if e.is_empty() => {}
        (Value::Array(e), None) if e.is_empty() => {}
        (Value::Object(e), Some(Value::Object(a))) => {
            for (key, value) in e {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(key));
                walk(value, a.get(key), path, found);
                path.truncate(len);
            }
        }
        (Value::Array(e), Some(Value::Array(a))) if e.len() == a.len() => {
            for (i, value) in e.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                walk(value, a.get(i), path, found);
                path.truncate(len);
            }
        }
        (Value::String(e), Some(Value::String(a)))
            if e == a || (holds_quantity(path) && same_quantity(e, a)) => {}
        (e, Some(a)) if e == a => {}
        _ => differ(found, path),
    }
}

/// Maps whose values are resource quantities (requests, limits, quota, capacity, limit
/// ranges, pod overhead), and fields that are one.
const QUANTITY_MAPS: &[&str] = &[
    "requests",
    "limits",
    "capacity",
    "hard",
    "allocatable",
    "min",
    "max",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "overhead",
];

/// Whether the field at `path` holds a quantity, which the API server may respell: elsewhere
/// `"1.10"` and `"1.1"` are two versions, not one number.
fn holds_quantity(path: &str) -> bool {
    let mut segments = path.rsplit('/');
    let field = segments.next().unwrap_or_default();
    let parent = segments.next().unwrap_or_default();
    field == "sizeLimit" || QUANTITY_MAPS.contains(&parent)
}

/// A JSON pointer's escaping of one key (`~` and `/`).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether `a` and `b` are the same Kubernetes resource quantity in two spellings.
fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(x), Some(y)) => {
            x == y || ((x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 4.0)
        }
        _ => false,
    }
}

/// The value of a Kubernetes quantity (`250m`, `1.5Gi`, `2e3`, `64`), or `None` when `text`
/// is not one. Plain words are not quantities, so `"a"` never equals `"b"` this way.
fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1.0));
    let digits = number.strip_prefix(['+', '-']).unwrap_or(number);
    let numeric = !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !numeric {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_the_api_server_adds_is_no_difference() {
        let sent = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "drill-shop", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"metadata": {"creationTimestamp": null},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                    "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}}}]}}}});
        let served = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "drill-shop", "labels": {"app": "web"},
                "uid": "u", "resourceVersion": "7", "generation": 1},
            "spec": {"replicas": 2, "progressDeadlineSeconds": 600,
                "template": {"metadata": {},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                    "restartPolicy": "Always"}}},
            "status": {}});
        assert_eq!(differences(&sent, &served), []);
    }

    #[test]
    fn what_is_lost_or_changed_is_named_by_its_path() {
        let sent = json!({"metadata": {"name": "db", "annotations": {"a/b": "x"}},
            "data": {"password": "c2VjcmV0", "user": "YWRtaW4="},
            "spec": {"ports": [{"port": 80}, {"port": 443}], "cpu": "500m"}});
        let served = json!({"metadata": {"name": "db", "annotations": {}},
            "data": {"password": "b3RoZXI=", "user": "YWRtaW4="},
            "spec": {"ports": [{"port": 80}], "cpu": "0.4"}});
        let found = differences(&sent, &served);
        let paths: Vec<&str> = found.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/data/password",
                "/metadata/annotations/a~1b",
                "/spec/cpu",
                "/spec/ports"
            ]
        );
        assert_eq!(found[1].actual, None);
        assert_eq!(
            found[0].to_string(),
            "/data/password: the backup holds \"c2VjcmV0\", the cluster serves \"b3RoZXI=\""
        );
    }

    #[test]
    fn quantities_are_compared_by_value_and_words_are_not_quantities() {
        for (a, b) in [
            ("1000m", "1"),
            ("1024Mi", "1Gi"),
            ("2e3", "2k"),
            ("0.5", "500m"),
        ] {
            assert!(same_quantity(a, b), "{a} = {b}");
        }
        for (a, b) in [("1", "2"), ("1Gi", "1G"), ("web", "web2"), ("m", "")] {
            assert!(!same_quantity(a, b), "{a} ≠ {b}");
        }
        assert_eq!(quantity("Mi"), None);
        assert_eq!(quantity("nginx"), None);
        assert_eq!(quantity("-1.5k"), Some(-1500.0));
    }

    #[test]
    fn numbers_elsewhere_are_compared_as_written() {
        let sent = json!({"metadata": {"labels": {"version": "1.10"}},
            "spec": {"volumes": [{"emptyDir": {"sizeLimit": "1Gi"}}]}});
        let served = json!({"metadata": {"labels": {"version": "1.1"}},
            "spec": {"volumes": [{"emptyDir": {"sizeLimit": "1024Mi"}}]}});
        let found = differences(&sent, &served);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "/metadata/labels/version");
    }

    #[test]
    fn a_whole_object_missing_or_of_another_type_is_one_difference() {
        assert_eq!(differences(&json!({"a": 1}), &json!(null)).len(), 1);
        assert_eq!(
            differences(&json!({"a": [1]}), &json!({"a": {"0": 1}})).len(),
            1
        );
        assert_eq!(differences(&json!({"a": 1}), &json!({"a": "1"})).len(), 1);
    }

    #[test]
    fn a_verification_counts_by_resource_and_keeps_the_first_mismatches() {
        let mut v = Verification::default();
        for i in 0..13 {
            v.expect("configmaps");
            let found = differences(&json!({"data": {"k": i.to_string()}}), &json!({"data": {}}));
            v.compared("configmaps", format!("configmaps drill-a/c{i}"), &found);
        }
        v.expect("secrets");
        v.compared("secrets", "secrets drill-a/s".into(), &[]);
        assert_eq!(v.expected(), 14);
        assert_eq!(v.verified_total(), 1);
        assert_eq!(v.mismatched, 13);
        assert_eq!(v.mismatches.len(), MISMATCHES_KEPT);
        assert_eq!(
            v.mismatches[2].to_string(),
            "configmaps drill-a/c2: /data/k: the backup holds \"2\", the cluster serves nothing"
        );
        assert!(!v.holds());
        let mut fine = Verification::default();
        fine.expect("secrets");
        assert!(!fine.holds(), "an object never read back is not verified");
        fine.verified("secrets");
        assert!(fine.holds());
    }

    #[test]
    fn a_mismatch_quotes_three_differences_and_counts_the_rest() {
        let mut v = Verification::default();
        let sent = json!({"data": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}});
        v.compared(
            "configmaps",
            "configmaps x/y".into(),
            &differences(&sent, &json!({"data": {}})),
        );
        let problem = &v.mismatches[0].problem;
        assert_eq!(problem.matches("the backup holds").count(), 3, "{problem}");
        assert!(problem.ends_with("and 2 more"), "{problem}");
    }
}
