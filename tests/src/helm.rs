//! The Helm chart as Helm renders it: `charts/tools/render.py` run in the venv `cargo xtask
//! test` makes with `helm-python-sdk` (Helm's Go SDK), so the tests see exactly the manifests
//! and lint findings `helm install` would produce, without a helm binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/backup-fleet")
}

/// The venv's python: `$BACKUP_HELM_PYTHON` (set by `cargo xtask test`), else where the test
/// command makes it.
fn python() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("BACKUP_HELM_PYTHON") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let default = PathBuf::from(home).join(".cache/backup-fleet/helm-venv/bin/python");
    if !default.is_file() {
        bail!(
            "no Helm SDK venv at {}: run `cargo xtask test` once (it makes the venv), or set \
             BACKUP_HELM_PYTHON",
            default.display()
        );
    }
    Ok(default)
}

/// What Helm made of the chart with some values.
#[derive(Debug)]
pub struct Rendered {
    /// Template path → rendered text.
    pub manifests: serde_json::Map<String, Value>,
    /// The CRDs under `crds/`, as YAML.
    pub crds: Vec<String>,
    /// `helm lint --strict`'s report.
    pub lint: Value,
}

impl Rendered {
    /// Every object the templates render (NOTES.txt and empty documents left out).
    pub fn objects(&self) -> Result<Vec<Value>> {
        let mut objects = Vec::new();
        for (path, text) in &self.manifests {
            if path.ends_with("NOTES.txt") {
                continue;
            }
            let text = text.as_str().unwrap_or_default();
            for document in serde_yaml_ng::Deserializer::from_str(text) {
                let value: Value = serde::Deserialize::deserialize(document)
                    .with_context(|| format!("parsing {path}"))?;
                if !value.is_null() {
                    objects.push(value);
                }
            }
        }
        Ok(objects)
    }

    /// The rendered NOTES.txt.
    pub fn notes(&self) -> &str {
        self.manifests
            .iter()
            .find(|(path, _)| path.ends_with("NOTES.txt"))
            .and_then(|(_, text)| text.as_str())
            .unwrap_or_default()
    }

    /// Lint findings of severity warning or error, as text.
    pub fn lint_problems(&self) -> Vec<String> {
        self.lint["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
            .map(|m| m.to_string())
            .chain(
                self.lint["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e.to_string()),
            )
            .collect()
    }
}

/// Renders the chart as release `release` in `namespace` with `values`; `Ok(Err(message))`
/// when Helm refuses the values or a template fails (the message is Helm's).
pub fn render(values: &Value, release: &str, namespace: &str) -> Result<Result<Rendered, String>> {
    let script = chart_dir().join("../tools/render.py");
    let mut child = Command::new(python()?)
        .arg(&script)
        .arg(chart_dir())
        .args([release, namespace])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the Helm SDK renderer")?;
    child
        .stdin
        .take()
        .context("renderer stdin")?
        .write_all(values.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let parsed: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the renderer printed no JSON (status {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(error) = parsed["error"].as_str() {
        return Ok(Err(error.to_string()));
    }
    Ok(Ok(Rendered {
        manifests: parsed["manifests"]
            .as_object()
            .cloned()
            .context("no manifests")?,
        crds: parsed["crds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect(),
        lint: parsed["lint"].clone(),
    }))
}
