//! The house is written down and checked: the README's crate map says which workspace crates each
//! crate may depend on, and every `Cargo.toml` keeps to it. A library that reaches up the house
//! (the CLI pulling in the controller and its web server, the API types pulling in a client)
//! fails here, naming the crate, the dependency and the row to read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
        .to_path_buf()
}

/// The workspace's members, from the root manifest's `members = [...]`.
fn members(manifest: &str) -> Vec<String> {
    let start = manifest
        .find("members = [")
        .expect("the root manifest lists its members");
    let list = &manifest[start..];
    let list = &list[..list.find(']').expect("the members list ends")];
    list.lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.strip_suffix("\","))
        .map(String::from)
        .collect()
}

/// The README crate map: member path → the crates it may depend on.
fn allowed(readme: &str) -> BTreeMap<String, BTreeSet<String>> {
    let map = &readme[readme
        .find("## Crate map")
        .expect("the README has a crate map")..];
    let map = &map[..map[3..].find("\n## ").map_or(map.len(), |end| end + 3)];
    map.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let path = cells[0].trim().trim_matches('`').to_string();
            let deps = cells
                .last()
                .expect("a row has cells")
                .split(',')
                .map(|d| d.trim().trim_matches('`').to_string())
                .filter(|d| !d.is_empty() && d != "—")
                .collect();
            (path, deps)
        })
        .collect()
}

/// The workspace crates a manifest's `[dependencies]` names (dev- and build-dependencies are
/// not part of the house).
fn workspace_dependencies(manifest: &str, ours: &BTreeSet<String>) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if !in_dependencies || line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .trim();
        if ours.contains(name) {
            found.insert(name.to_string());
        }
    }
    found
}

/// The package name a manifest declares.
fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("name = \"")?.strip_suffix('"'))
        .expect("a member's manifest names its package")
        .to_string()
}

#[test]
fn every_crate_depends_only_on_what_the_crate_map_allows() {
    let root = root();
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let members = members(&read(&root.join("Cargo.toml")));
    let allowed = allowed(&read(&root.join("README.md")));
    let manifests: BTreeMap<String, String> = members
        .iter()
        .map(|m| (m.clone(), read(&root.join(m).join("Cargo.toml"))))
        .collect();
    let names: BTreeMap<&str, String> = manifests
        .iter()
        .map(|(m, text)| (m.as_str(), package_name(text)))
        .collect();
    let ours: BTreeSet<String> = names.values().cloned().collect();
    let mut wrong = Vec::new();
    for (member, manifest) in &manifests {
        let Some(may) = allowed.get(member) else {
            wrong.push(format!("{member} has no row in the README's crate map"));
            continue;
        };
        for dependency in workspace_dependencies(manifest, &ours) {
            if !may.contains(&dependency) {
                wrong.push(format!(
                    "{member} depends on {dependency}, which its row in the README's crate map \
                     does not allow (move the code inward, or change the map with a reason)"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The map names only crates that exist, so a renamed crate cannot leave a stale row allowed.
    for (path, may) in &allowed {
        for name in may {
            assert!(
                ours.contains(name),
                "the crate map's row {path} names unknown {name}"
            );
        }
    }
}

#[test]
fn the_checker_sees_a_dependency_up_the_house() {
    let ours: BTreeSet<String> = ["backup-core", "backup-controller"]
        .map(String::from)
        .into();
    let manifest = "[package]\nname = \"backup-cli\"\n\n[dependencies]\n# a comment\n\
                    backup-controller.workspace = true\nbackup-core = { workspace = true }\n\
                    serde.workspace = true\n\n[dev-dependencies]\nbackup-x.workspace = true\n";
    assert_eq!(
        workspace_dependencies(manifest, &ours),
        ["backup-controller", "backup-core"]
            .map(String::from)
            .into()
    );
    let readme = "## Crate map\n\n| crate | owns | may depend on |\n|---|---|---|\n\
                  | `crates/backup-cli` | x, y | `backup-core` |\n| `charts/c` | z | — |\n\n## Next\n";
    let map = allowed(readme);
    assert_eq!(map["crates/backup-cli"], ["backup-core".to_string()].into());
    assert!(map["charts/c"].is_empty());
}
