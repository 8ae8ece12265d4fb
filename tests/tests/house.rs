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

/// The controller's functions stay short enough to read at once: a function over this many
/// lines (signature to closing brace) is doing more than one job.
const LONGEST_CONTROLLER_FUNCTION: usize = 80;

/// Every function (free, in an impl or a trait) in the Rust files under `dir`, as
/// `(file:line name, lines)`.
fn function_lengths(dir: &Path) -> Vec<(String, usize)> {
    struct Lengths<'a> {
        file: &'a str,
        found: Vec<(String, usize)>,
    }
    impl Lengths<'_> {
        fn note(&mut self, sig: &syn::Signature, block: &syn::Block) {
            let first = sig.fn_token.span.start().line;
            let last = block.brace_token.span.close().end().line;
            let name = format!("{}:{first} {}", self.file, sig.ident);
            self.found.push((name, last + 1 - first));
        }
    }
    impl<'ast> syn::visit::Visit<'ast> for Lengths<'_> {
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            self.note(&f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            self.note(&f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
        fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
            if let Some(block) = &f.default {
                self.note(&f.sig, block);
            }
            syn::visit::visit_trait_item_fn(self, f);
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                let file =
                    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let shown = path
                    .strip_prefix(root())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let mut lengths = Lengths {
                    file: &shown,
                    found: Vec::new(),
                };
                syn::visit::Visit::visit_file(&mut lengths, &file);
                found.extend(lengths.found);
            }
        }
    }
    found
}

#[test]
fn no_controller_function_is_longer_than_it_can_be_read_at_once() {
    let mut long: Vec<String> = function_lengths(&root().join("crates/backup-controller/src"))
        .into_iter()
        .filter(|(_, lines)| *lines > LONGEST_CONTROLLER_FUNCTION)
        .map(|(name, lines)| format!("{name}: {lines} lines"))
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "functions over {LONGEST_CONTROLLER_FUNCTION} lines in the controller (split them by \
         step: validate, observe, plan, apply):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_counts_signature_to_closing_brace() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let body = "    let x = 1;\n".repeat(3);
    std::fs::write(
        dir.path().join("a.rs"),
        format!("/// doc\nfn three() {{\n{body}}}\nimpl S {{\n    fn one(&self) {{}}\n}}\n"),
    )
    .expect("a source file");
    let mut lengths: Vec<usize> = function_lengths(dir.path())
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    lengths.sort();
    assert_eq!(lengths, [1, 5]);
}
