//! Where an item lives inside a Velero backup tarball.
//!
//! Velero stores every backed-up object as JSON at
//! `resources/<resource>[.<group>]/namespaces/<namespace>/<name>.json` (namespaced) or
//! `resources/<resource>[.<group>]/cluster/<name>.json` (cluster-scoped); the core group has no
//! suffix (`resources/configmaps/...`). The preferred-version copy of the same item sits under
//! `resources/<resource>[.<group>]/v1-preferredversion/...` in format 1.1.0, so a reader must
//! accept both and tell them apart.

use std::fmt;

/// The tarball format version Velero writes to `metadata/version`.
pub const FORMAT_VERSION: &str = "1.1.0";
/// Path of the format version file inside the tarball.
pub const VERSION_FILE: &str = "metadata/version";

/// The location of one item in a Velero tarball.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemPath {
    /// Plural resource name, e.g. `deployments`.
    pub resource: String,
    /// API group, empty for the core group.
    pub group: String,
    /// Namespace for namespaced items, `None` for cluster-scoped ones.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// The API version directory when this is a versioned copy (`v1-preferredversion`), else `None`.
    pub version_dir: Option<String>,
}

/// Why a tarball entry is not an item path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The entry lies outside `resources/`, so it is metadata or foreign, not an item.
    #[error(
        "tarball entry {path:?} is not under resources/: expected resources/<resource.group>/..."
    )]
    NotAResource {
        /// The tarball entry's path.
        path: String,
    },
    /// The entry is under `resources/` but not in Velero's namespaced or cluster-scoped shape.
    #[error(
        "tarball entry {path:?} has an unexpected shape: expected \
         resources/<resource.group>/[<version>-preferredversion/]namespaces/<ns>/<name>.json \
         or .../cluster/<name>.json"
    )]
    Malformed {
        /// The tarball entry's path.
        path: String,
    },
    /// A resource, namespace or object name that would not make a single path segment.
    #[error("item name {name:?} cannot be stored: it must be non-empty and contain no '/'")]
    InvalidName {
        /// The offending name.
        name: String,
    },
}

impl ItemPath {
    /// `<resource>.<group>`, or just `<resource>` for the core group — Velero's directory name.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// The path of this item inside the tarball.
    pub fn to_path(&self) -> Result<String, LayoutError> {
        for part in [&self.resource, &self.name]
            .into_iter()
            .chain(self.namespace.as_ref())
        {
            if part.is_empty() || part.contains('/') || part == "." || part == ".." {
                return Err(LayoutError::InvalidName { name: part.clone() });
            }
        }
        let mut path = format!("resources/{}/", self.group_resource());
        if let Some(version_dir) = &self.version_dir {
            path.push_str(version_dir);
            path.push('/');
        }
        match &self.namespace {
            Some(ns) => path.push_str(&format!("namespaces/{ns}/{}.json", self.name)),
            None => path.push_str(&format!("cluster/{}.json", self.name)),
        }
        Ok(path)
    }

    /// Parses a tarball entry path; accepts both the plain and the preferred-version layout.
    pub fn parse(path: &str) -> Result<Self, LayoutError> {
        let rest = path
            .strip_prefix("resources/")
            .ok_or_else(|| LayoutError::NotAResource { path: path.into() })?;
        let malformed = || LayoutError::Malformed { path: path.into() };
        let parts: Vec<&str> = rest.split('/').collect();
        let (group_resource, version_dir, scope) = match parts.as_slice() {
            [gr, v, scope @ ..] if v.ends_with("-preferredversion") => (*gr, Some(*v), scope),
            [gr, scope @ ..] => (*gr, None, scope),
            [] => return Err(malformed()),
        };
        let (namespace, file) = match scope {
            ["namespaces", ns, file] => (Some(*ns), *file),
            ["cluster", file] => (None, *file),
            _ => return Err(malformed()),
        };
        let name = file.strip_suffix(".json").ok_or_else(malformed)?;
        if group_resource.is_empty() || name.is_empty() || namespace == Some("") {
            return Err(malformed());
        }
        let (resource, group) = group_resource
            .split_once('.')
            .unwrap_or((group_resource, ""));
        Ok(ItemPath {
            resource: resource.into(),
            group: group.into(),
            namespace: namespace.map(Into::into),
            name: name.into(),
            version_dir: version_dir.map(Into::into),
        })
    }
}

impl fmt::Display for ItemPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.group_resource(), self.name),
            None => write!(f, "{}/{}", self.group_resource(), self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(resource: &str, group: &str, ns: Option<&str>, name: &str) -> ItemPath {
        ItemPath {
            resource: resource.into(),
            group: group.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
            version_dir: None,
        }
    }

    #[test]
    fn core_group_has_no_suffix() {
        let path = item("configmaps", "", Some("app"), "settings")
            .to_path()
            .unwrap();
        assert_eq!(path, "resources/configmaps/namespaces/app/settings.json");
    }

    #[test]
    fn named_group_is_suffixed_and_cluster_scope_has_its_own_dir() {
        let deploy = item("deployments", "apps", Some("web"), "api");
        assert_eq!(
            deploy.to_path().unwrap(),
            "resources/deployments.apps/namespaces/web/api.json"
        );
        let crd = item(
            "customresourcedefinitions",
            "apiextensions.k8s.io",
            None,
            "widgets.example.com",
        );
        assert_eq!(
            crd.to_path().unwrap(),
            "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/widgets.example.com.json"
        );
    }

    #[test]
    fn preferred_version_copy_round_trips_and_is_marked() {
        let mut deploy = item("deployments", "apps", Some("web"), "api");
        deploy.version_dir = Some("v1-preferredversion".into());
        let path = deploy.to_path().unwrap();
        assert_eq!(
            path,
            "resources/deployments.apps/v1-preferredversion/namespaces/web/api.json"
        );
        assert_eq!(ItemPath::parse(&path).unwrap(), deploy);
    }

    #[test]
    fn parse_splits_resource_from_dotted_group() {
        let parsed = ItemPath::parse(
            "resources/customresourcedefinitions.apiextensions.k8s.io/cluster/widgets.example.com.json",
        )
        .unwrap();
        assert_eq!(parsed.resource, "customresourcedefinitions");
        assert_eq!(parsed.group, "apiextensions.k8s.io");
        assert_eq!(parsed.namespace, None);
        assert_eq!(parsed.name, "widgets.example.com");
    }

    #[test]
    fn parse_rejects_foreign_and_malformed_entries() {
        assert!(matches!(
            ItemPath::parse("metadata/version"),
            Err(LayoutError::NotAResource { .. })
        ));
        for bad in [
            "resources/configmaps/namespaces/app.json",
            "resources/configmaps/namespaces//x.json",
            "resources/configmaps/cluster/x.yaml",
            "resources/configmaps/elsewhere/a/b.json",
        ] {
            let err = ItemPath::parse(bad).unwrap_err();
            assert!(matches!(err, LayoutError::Malformed { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad));
        }
    }

    #[test]
    fn names_that_would_escape_their_directory_are_refused() {
        for bad in ["", "..", "a/b"] {
            let err = item("configmaps", "", Some("app"), bad)
                .to_path()
                .unwrap_err();
            assert_eq!(err, LayoutError::InvalidName { name: bad.into() });
        }
    }
}
