//! Installing CustomResourceDefinitions in a cluster of the local control plane and waiting until
//! they serve.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::wait::wait_until;

/// The field manager our CRDs are applied with by [`install_crds`], and the tests' objects too:
/// one name, so the tests, the demo and the benchmarks may each re-apply what another applied.
pub const MANAGER: &str = "controller-tests";

/// How long a CRD may take to become Established after being applied.
pub const ESTABLISHED_WITHIN: Duration = Duration::from_secs(60);

/// Whether the CRD's `Established` condition is `True`.
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Waits until CRD `name` is Established.
pub async fn wait_established(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_until(timeout, &format!("CRD {name} Established"), || {
        let api = api.clone();
        async move { Ok(is_established(&api.get(name).await?)) }
    })
    .await
}

/// Applies `crds` with server-side apply as `manager` and waits until each is Established.
/// Idempotent, so every test may call it.
pub async fn install(
    client: &Client,
    crds: &[CustomResourceDefinition],
    manager: &str,
) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(manager).force();
    for crd in crds {
        let name = crd.name_any();
        api.patch(&name, &pp, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    for crd in crds {
        wait_established(client, &crd.name_any(), ESTABLISHED_WITHIN).await?;
    }
    Ok(())
}

/// [`install`] as [`MANAGER`]: what the tests, the demo and the benchmarks install our CRDs with.
pub async fn install_crds(client: &Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    install(client, crds, MANAGER).await
}
