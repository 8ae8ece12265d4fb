//! Which objects a backup or restore touches: Velero's include/exclude semantics as a pure matcher.
//!
//! Both engines (Velero in-cluster and our direct engine) must select the same objects for the
//! same spec, so the rules live here once:
//! - an exclude always wins over an include; an empty include list or `*` means "all";
//! - namespaces accept `*`/`?` globs (`kube-*`), like Velero's;
//! - resources are `resource.group` (`deployments.apps`, core group bare: `configmaps`); a
//!   pattern also matches by bare resource name (`deployments`) and Velero's
//!   `resource.version.group` form (`deployments.v1.apps`);
//! - cluster-scoped objects follow `include_cluster_resources` (None = auto: included only when
//!   all namespaces are selected) unless the newer `included/excluded_cluster_scoped_resources`
//!   fields are used — mixing the two styles is rejected, as Velero does;
//! - `label_selector` and `or_label_selectors` are mutually exclusive.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::selector::{LabelSelector, SelectorError};

/// A Kubernetes API group plus plural resource, e.g. `deployments` in `apps`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupResource {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource name, lowercase.
    pub resource: String,
}

impl GroupResource {
    /// Builds from parts (lower-cased).
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_ascii_lowercase(),
            resource: resource.to_ascii_lowercase(),
        }
    }

    /// Parses Velero's `resource.group` form; a string without a dot is a core resource.
    pub fn parse(s: &str) -> Self {
        match s.split_once('.') {
            Some((r, g)) => GroupResource::new(g, r),
            None => GroupResource::new("", s),
        }
    }
}

impl fmt::Display for GroupResource {
    /// `resource.group`, or just `resource` for the core group: the folder name Velero uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// An object to match: its kind, where it lives and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRef {
    /// What it is.
    pub group_resource: GroupResource,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// Why a filter is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Both selector styles set.
    #[error(
        "labelSelector and orLabelSelectors are both set (labelSelector {label_selector}, {or_count} orLabelSelectors): use only one of them"
    )]
    BothSelectors {
        /// The labelSelector, as JSON-ish debug text.
        label_selector: String,
        /// How many orLabelSelectors were given.
        or_count: usize,
    },
    /// A selector is invalid.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// `*` in an exclude list would exclude everything.
    #[error(
        "{list} contains \"*\", which would exclude everything: remove it, or list what to exclude"
    )]
    ExcludeAll {
        /// Which list.
        list: &'static str,
    },
    /// The same entry in an include and an exclude list.
    #[error("{value:?} is in both {include} and {exclude}: keep it in only one")]
    Conflict {
        /// The entry.
        value: String,
        /// The include list's name.
        include: &'static str,
        /// The exclude list's name.
        exclude: &'static str,
    },
    /// An entry that cannot be a namespace or resource name, even as a pattern.
    #[error(
        "{list} entry {value:?} is invalid: use lowercase names, '-', '.', and the wildcards '*' and '?'"
    )]
    InvalidEntry {
        /// Which list.
        list: &'static str,
        /// The entry.
        value: String,
    },
    /// Old- and new-style cluster resource fields mixed.
    #[error(
        "includeClusterResources/includedResources/excludedResources cannot be combined with includedClusterScopedResources/excludedClusterScopedResources: use one style"
    )]
    MixedStyles,
}

/// Velero's resource filter. The default selects everything (cluster resources: auto).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceFilter {
    /// Namespaces to include (globs); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespaces to exclude (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to include; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources to exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// Cluster-scoped objects: `Some(true)` all (per resource lists), `Some(false)` none,
    /// `None` only when every namespace is selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// New-style cluster-scoped include list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_cluster_scoped_resources: Vec<String>,
    /// New-style cluster-scoped exclude list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_cluster_scoped_resources: Vec<String>,
    /// All requirements must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Any one selector must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub or_label_selectors: Vec<LabelSelector>,
}

/// `*` and `?` glob match over bytes (names are ASCII).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let major_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if major_end == 0 {
        return false;
    }
    let tail = &rest[major_end..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|q| {
            tail.strip_prefix(q)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Whether one resource pattern selects `gr`.
fn resource_pattern_matches(pattern: &str, gr: &GroupResource) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    let full = gr.to_string();
    if glob_match(&pattern, &full) {
        return true;
    }
    match pattern.split_once('.') {
        // Bare resource: any group (Velero resolves it through discovery to the one group
        // that serves it; without discovery, matching by resource name is the equivalent).
        None => glob_match(&pattern, &gr.resource),
        // resource.version.group
        Some((res, rest)) => match rest.split_once('.') {
            Some((ver, group)) if is_version(ver) => {
                glob_match(res, &gr.resource) && glob_match(group, &gr.group)
            }
            None if is_version(rest) => gr.group.is_empty() && glob_match(res, &gr.resource),
            _ => false,
        },
    }
}

fn include_exclude<F: Fn(&str) -> bool>(includes: &[String], excludes: &[String], m: F) -> bool {
    if excludes.iter().any(|e| m(e)) {
        return false;
    }
    includes.is_empty() || includes.iter().any(|i| i == "*" || m(i))
}

fn check_lists(
    includes: &[String],
    excludes: &[String],
    include: &'static str,
    exclude: &'static str,
) -> Result<(), FilterError> {
    for (list, values) in [(include, includes), (exclude, excludes)] {
        for v in values {
            let ok = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '?' | '_'));
            if !ok {
                return Err(FilterError::InvalidEntry {
                    list,
                    value: v.clone(),
                });
            }
        }
    }
    if excludes.iter().any(|e| e == "*") {
        return Err(FilterError::ExcludeAll { list: exclude });
    }
    if let Some(v) = includes.iter().find(|i| excludes.contains(i)) {
        return Err(FilterError::Conflict {
            value: v.clone(),
            include,
            exclude,
        });
    }
    Ok(())
}

impl ResourceFilter {
    /// Checks the filter for contradictions and malformed entries, as Velero's validation does.
    pub fn validate(&self) -> Result<(), FilterError> {
        if let Some(sel) = &self.label_selector
            && !self.or_label_selectors.is_empty()
        {
            return Err(FilterError::BothSelectors {
                label_selector: format!("{sel:?}"),
                or_count: self.or_label_selectors.len(),
            });
        }
        check_lists(
            &self.included_namespaces,
            &self.excluded_namespaces,
            "includedNamespaces",
            "excludedNamespaces",
        )?;
        check_lists(
            &self.included_resources,
            &self.excluded_resources,
            "includedResources",
            "excludedResources",
        )?;
        check_lists(
            &self.included_cluster_scoped_resources,
            &self.excluded_cluster_scoped_resources,
            "includedClusterScopedResources",
            "excludedClusterScopedResources",
        )?;
        let new_style = !self.included_cluster_scoped_resources.is_empty()
            || !self.excluded_cluster_scoped_resources.is_empty();
        let old_style = self.include_cluster_resources.is_some()
            || !self.included_resources.is_empty()
            || !self.excluded_resources.is_empty();
        if new_style && old_style {
            return Err(FilterError::MixedStyles);
        }
        if let Some(s) = &self.label_selector {
            s.validate()?;
        }
        for s in &self.or_label_selectors {
            s.validate()?;
        }
        Ok(())
    }

    /// Whether every namespace is selected (drives the `None` = auto cluster-resources rule).
    pub fn all_namespaces(&self) -> bool {
        self.excluded_namespaces.is_empty()
            && (self.included_namespaces.is_empty()
                || self.included_namespaces.iter().any(|n| n == "*"))
    }

    /// Whether a namespace is selected.
    pub fn matches_namespace(&self, ns: &str) -> bool {
        include_exclude(&self.included_namespaces, &self.excluded_namespaces, |p| {
            glob_match(p, ns)
        })
    }

    /// Whether a (namespaced) resource type is selected.
    pub fn matches_resource(&self, gr: &GroupResource) -> bool {
        include_exclude(&self.included_resources, &self.excluded_resources, |p| {
            resource_pattern_matches(p, gr)
        })
    }

    /// Whether a cluster-scoped resource type is selected (see module docs).
    pub fn matches_cluster_resource(&self, gr: &GroupResource) -> bool {
        let new_style = !self.included_cluster_scoped_resources.is_empty()
            || !self.excluded_cluster_scoped_resources.is_empty();
        if new_style {
            let m = |p: &str| resource_pattern_matches(p, gr);
            if self.excluded_cluster_scoped_resources.iter().any(|p| m(p)) {
                return false;
            }
            if self.included_cluster_scoped_resources.is_empty() {
                return self.all_namespaces();
            }
            return self.included_cluster_scoped_resources.iter().any(|p| m(p));
        }
        match self.include_cluster_resources {
            Some(false) => false,
            Some(true) => self.matches_resource(gr),
            None => self.all_namespaces() && self.matches_resource(gr),
        }
    }

    /// Whether labels satisfy `label_selector`, or any of `or_label_selectors`; true if neither.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        if let Some(s) = &self.label_selector {
            return s.matches(labels);
        }
        self.or_label_selectors.is_empty()
            || self.or_label_selectors.iter().any(|s| s.matches(labels))
    }

    /// Whether an object is selected: namespace (or cluster scope), resource and labels.
    pub fn matches(&self, item: &ItemRef) -> bool {
        let scope_ok = match &item.namespace {
            Some(ns) => self.matches_namespace(ns) && self.matches_resource(&item.group_resource),
            None => self.matches_cluster_resource(&item.group_resource),
        };
        scope_ok && self.matches_labels(&item.labels)
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
