//! Per-test namespaces with unique names (`t-<test>-<random>`), so tests run in parallel against
//! the shared clusters and clean up after themselves.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

pub use backup_localenv::unique_name;

/// A namespace owned by one test. Call [`TestNamespace::delete`] at the end; if the test panics
/// first, the namespace is left for `env down` (names never collide, so nothing else notices).
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `t-<test>-<random>` on the cluster behind `client`.
    pub async fn create(client: &Client, test: &str) -> Result<Self> {
        let name = unique_name("t", test);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("backup-fleet.test/owner".to_owned(), "tests".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            client: client.clone(),
        })
    }

    /// Deletes the namespace without waiting for it to disappear.
    pub async fn delete(self) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(&self.name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting namespace {}", self.name))?;
        Ok(())
    }

    /// Deletes the namespace and waits (up to `timeout`) until the controller-manager has
    /// emptied and removed it.
    pub async fn delete_and_wait(self, timeout: Duration) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        self.delete().await?;
        let start = Instant::now();
        loop {
            match api.get_opt(&name).await? {
                None => return Ok(()),
                Some(ns) if start.elapsed() > timeout => {
                    let phase = ns.status.and_then(|s| s.phase).unwrap_or_default();
                    bail!(
                        "namespace {name} still exists after {} s (phase {phase})",
                        timeout.as_secs()
                    );
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}
