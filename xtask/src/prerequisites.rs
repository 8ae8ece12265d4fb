//! The one step every `cargo xtask` command goes through before it compiles or runs anything:
//! each command names what it needs ([`Needs`]), and [`ensure`] installs what this machine
//! lacks, each thing checked by the file or binary it provides, never by a package manager's
//! word or by what happened to be installed by an earlier command.
//!
//! Why one step: a command that found its prerequisites only because another command had
//! installed them passes on a developer's machine and fails on a newcomer's. With every
//! command's needs declared here and checked at its start, `cargo xtask fresh-check` (the
//! README's commands in a clean Debian root filesystem) catches a missing one.

use std::path::PathBuf;

use anyhow::Result;

use crate::env::packages::{self, Requirement};

/// What one command needs on the machine.
#[derive(Clone, Debug, Default)]
pub struct Needs {
    /// Debian packages, installed together in one apt run.
    debian: Vec<Requirement>,
    /// kube-apiserver and kube-controller-manager, built once from Debian's source package.
    kubernetes: bool,
    /// The S3 server (`cargo install s3s-fs`).
    s3s_fs: bool,
    /// Azure Blob Storage's emulator (npm).
    azurite: bool,
    /// The Python venv with Helm's SDK, for the chart tests.
    helm_sdk: bool,
}

impl Needs {
    /// Nothing but Rust.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// These Debian packages.
    pub fn debian(requirements: &[Requirement]) -> Self {
        Self {
            debian: requirements.to_vec(),
            ..Self::default()
        }
    }

    /// The local control plane (`cargo xtask env up`): etcd, Kubernetes, s3s-fs and Azurite.
    pub fn control_plane() -> Self {
        Self {
            debian: [packages::ETCD, packages::CONTROL_PLANE, packages::NODE].concat(),
            kubernetes: true,
            s3s_fs: true,
            azurite: true,
            helm_sdk: false,
        }
    }

    /// Everything `cargo xtask test` runs: the control plane, the real peers the tests
    /// interoperate with, and Helm's SDK.
    pub fn tests() -> Self {
        let mut needs = Self::control_plane().and(Self::debian(packages::TEST_TOOLS));
        needs.helm_sdk = true;
        needs
    }

    /// Only the Kubernetes build (with [`packages::CONTROL_PLANE`] to build it).
    pub fn kubernetes() -> Self {
        Self {
            kubernetes: true,
            ..Self::default()
        }
    }

    /// Only the S3 server.
    pub fn s3s_fs() -> Self {
        Self {
            s3s_fs: true,
            ..Self::default()
        }
    }

    /// Both sets.
    pub fn and(mut self, other: Self) -> Self {
        for requirement in other.debian {
            if !self
                .debian
                .iter()
                .any(|r| r.provides == requirement.provides)
            {
                self.debian.push(requirement);
            }
        }
        self.kubernetes |= other.kubernetes;
        self.s3s_fs |= other.s3s_fs;
        self.azurite |= other.azurite;
        self.helm_sdk |= other.helm_sdk;
        self
    }

    /// The Debian packages of the whole set, including those the other parts need to be
    /// built or installed (Go for Kubernetes, Node.js for Azurite, python3-venv for Helm's SDK).
    fn all_debian(&self) -> Vec<Requirement> {
        let mut all = Self::debian(&self.debian);
        if self.kubernetes {
            all = all.and(Self::debian(packages::CONTROL_PLANE));
        }
        if self.azurite {
            all = all.and(Self::debian(packages::NODE));
        }
        if self.helm_sdk {
            all = all.and(Self::debian(crate::helm_sdk::VENV));
        }
        all.debian
    }
}

impl Needs {
    /// One line per missing part, with what installing it costs, so a newcomer knows what the
    /// first run is waiting for.
    fn missing(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let debian = packages::missing(&self.all_debian());
        if !debian.is_empty() {
            let mut names: Vec<&str> = debian.iter().map(|r| r.package).collect();
            names.dedup();
            lines.push(format!(
                "Debian packages: {} (apt-get, a minute or two)",
                names.join(" ")
            ));
        }
        if self.kubernetes && !crate::env::kubernetes_is_built() {
            lines.push(
                "kube-apiserver and kube-controller-manager, built from Debian's source \
                 (about 9 minutes on 2 cores, once per machine)"
                    .into(),
            );
        }
        if self.s3s_fs && !crate::env::s3s_fs_is_installed() {
            lines.push("the S3 server s3s-fs (cargo install, about 3 minutes, once)".into());
        }
        if self.azurite && !crate::env::azurite_is_installed() {
            lines.push("Azurite, Azure Blob Storage's emulator (npm, under a minute, once)".into());
        }
        if self.helm_sdk && !crate::helm_sdk::is_ready() {
            lines.push("Helm's SDK in a Python venv (pip, under a minute, once)".into());
        }
        lines
    }
}

/// What [`ensure`] found or installed that a command uses by path.
#[derive(Clone, Debug, Default)]
pub struct Installed {
    /// The venv's python with Helm's SDK, when it was needed.
    pub helm_python: Option<PathBuf>,
}

/// Installs what `needs` names and this machine lacks: first every Debian package in one apt
/// run, then the Kubernetes build, s3s-fs, Azurite and Helm's SDK, each only when its file is
/// missing.
pub fn ensure(needs: &Needs) -> Result<Installed> {
    let missing = needs.missing();
    if !missing.is_empty() {
        println!("this machine lacks what the command needs; installing it first:");
        for line in &missing {
            println!("  - {line}");
        }
    }
    packages::ensure_packages(&needs.all_debian())?;
    if needs.kubernetes {
        crate::env::ensure_kubernetes_built()?;
    }
    if needs.s3s_fs {
        crate::env::ensure_s3s_fs()?;
    }
    if needs.azurite {
        crate::env::ensure_azurite()?;
    }
    let helm_python = match needs.helm_sdk {
        true => Some(crate::helm_sdk::ensure()?),
        false => None,
    };
    Ok(Installed { helm_python })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_need_the_control_plane_and_every_peer() {
        let debian = Needs::tests().all_debian();
        for needed in [
            "/usr/bin/etcd",
            "/usr/bin/go",
            "/usr/bin/node",
            "/usr/bin/age",
        ] {
            assert!(
                debian.iter().any(|r| r.provides == needed),
                "{needed} missing"
            );
        }
        assert!(debian.iter().all(|r| !r.provides.contains("protoc")));
        let mut provides: Vec<_> = debian.iter().map(|r| r.provides).collect();
        provides.sort_unstable();
        let before = provides.len();
        provides.dedup();
        assert_eq!(before, provides.len(), "a file is required twice");
    }

    #[test]
    fn nothing_needs_nothing() {
        let needs = Needs::nothing();
        assert!(needs.all_debian().is_empty());
        assert!(!(needs.kubernetes || needs.s3s_fs || needs.azurite || needs.helm_sdk));
    }
}
