//! Per-test namespaces with unique names (`t-<test>-<random>`), so tests run in parallel against
//! the shared clusters and clean up after themselves, pass or fail: a namespace not deleted by
//! the test is deleted when its guard drops (a failed assertion unwinding through the test).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

pub use backup_localenv::unique_name;

/// A namespace owned by one test, deleted when dropped unless [`TestNamespace::delete`] did it.
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    client: Client,
    /// The uid of the cluster's `kube-system`: which cluster of the environment it is on.
    cluster: String,
    deleted: bool,
}

impl TestNamespace {
    /// Creates `t-<test>-<random>` on the cluster behind `client`.
    pub async fn create(client: &Client, test: &str) -> Result<Self> {
        Self::create_named(client, &unique_name("t", test)).await
    }

    /// Creates `name` on the cluster behind `client` (a name another test object chose, such
    /// as a namespace of the same name in another cluster).
    pub async fn create_named(client: &Client, name: &str) -> Result<Self> {
        let name = name.to_string();
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("backup-fleet.test/owner".to_owned(), "tests".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let cluster = cluster_identity(client).await?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            client: client.clone(),
            cluster,
            deleted: false,
        })
    }

    /// Deletes the namespace without waiting for it to disappear.
    pub async fn delete(mut self) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        self.deleted = true;
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

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // The test's runtime may be the thread running this (a panic unwinding through it), and
        // its client's connections live on that runtime: the delete runs on a thread, a runtime
        // and clients of its own.
        let (name, cluster) = (self.name.clone(), self.cluster.clone());
        let deleted = std::thread::spawn(move || delete_apart(&name, &cluster)).join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test namespace {} was left behind: {e:#}", self.name),
            Err(_) => eprintln!(
                "test namespace {} was left behind (the delete panicked)",
                self.name
            ),
        }
    }
}

/// Which cluster `client` reaches: the uid of its `kube-system` namespace.
async fn cluster_identity(client: &Client) -> Result<String> {
    let system = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await
        .context("reading kube-system, to know the cluster again")?;
    system.metadata.uid.context("kube-system has no uid")
}

/// Deletes namespace `name` of the environment's cluster whose `kube-system` has uid `cluster`.
fn delete_apart(name: &str, cluster: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime to delete the namespace on")?;
    runtime.block_on(async {
        for state in &crate::env::shared()?.state.clusters {
            let client = crate::env::client_for(state).await?;
            if cluster_identity(&client).await? == cluster {
                Api::<Namespace>::all(client)
                    .delete(name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting namespace {name}"))?;
                return Ok(());
            }
        }
        bail!("no cluster of the local control plane has kube-system {cluster}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test that fails leaves no namespace behind.
    #[tokio::test]
    async fn a_namespace_is_deleted_when_its_test_unwinds() -> Result<()> {
        let env = crate::env::shared()?;
        let c1 = env.client("c1").await?;
        let ns = TestNamespace::create(&c1, "guard").await?;
        let name = ns.name.clone();
        let unwound = std::panic::AssertUnwindSafe(async move {
            let _owned = ns;
            panic!("a failed assertion");
        });
        let panicked = futures::FutureExt::catch_unwind(unwound).await;
        anyhow::ensure!(panicked.is_err(), "the test body panicked");
        let left = Api::<Namespace>::all(c1).get_opt(&name).await?;
        anyhow::ensure!(
            left.is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
            "namespace {name} outlived its test"
        );
        Ok(())
    }
}
