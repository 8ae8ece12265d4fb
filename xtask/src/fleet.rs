//! What the demo and the controller benchmark share: our binaries built by cargo, our objects
//! applied to `mgmt` by server-side apply, the controller run as a child process scoped to one
//! project namespace, and the clean-up of such a namespace.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_api::{
    ClusterBackup, ClusterRestore, EtcdBackupConfig, ManagedCluster, StorageLocation,
};
use backup_localenv::env_state::{ClusterState, S3State};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

/// The field manager xtask applies objects with.
pub const MANAGER: &str = "xtask";

/// Builds `bin` of `package` (release or debug) and returns its path.
pub fn build(package: &str, bin: &str, release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    eprintln!("building {bin} ({profile})");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    ensure!(
        status.success(),
        "cargo build -p {package} --bin {bin} ({profile}) failed: the compiler's message is above"
    );
    let root = crate::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(profile).join(bin))
}

/// Server-side applies `object` (JSON with `apiVersion`, `kind`, `metadata.name`) through `api`.
pub async fn apply<K>(api: &Api<K>, object: &Value) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object["metadata"]["name"]
        .as_str()
        .context("object without metadata.name")?;
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {} {name}", object["kind"]))?;
    Ok(())
}

/// Creates or replaces Secret `name` in `namespace` with one `key`.
pub async fn secret(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: &[u8],
) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let object = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: k8s_openapi::ByteString(value.to_vec())},
    });
    apply(&api, &object).await
}

/// The S3 server's credentials in Velero's AWS credentials-file format (key `cloud`).
pub fn s3_credentials(s3: &S3State) -> String {
    format!(
        "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
        s3.access_key_id, s3.secret_access_key
    )
}

/// A StorageLocation `name` on the environment's S3 server under `prefix`, reading its
/// credentials from Secret `credential` (key `cloud`).
pub fn s3_location(s3: &S3State, name: &str, prefix: &str, credential: &str) -> Value {
    json!({
        "apiVersion": "backupfleet.dev/v1alpha1", "kind": "StorageLocation",
        "metadata": {"name": name},
        "spec": {
            "provider": "aws",
            "objectStorage": {"bucket": s3.bucket, "prefix": prefix},
            "config": {"region": s3.region, "s3Url": s3.endpoint, "s3ForcePathStyle": "true"},
            "credential": {"name": credential, "key": "cloud"},
            "default": true,
        }
    })
}

/// A ManagedCluster `name` whose kubeconfig is key `kubeconfig` of Secret `secret`.
pub fn managed_cluster(name: &str, secret: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "backupfleet.dev/v1alpha1", "kind": "ManagedCluster",
        "metadata": {"name": name, "labels": labels},
        "spec": {"kubeconfig": {"name": secret, "key": "kubeconfig"}}
    })
}

/// The S3 credentials Secret of a project made by [`create_project`].
pub const S3_SECRET: &str = "s3-creds";

/// Sets project `project` up on `mgmt`: our CRDs, its namespace, the S3 credentials Secret
/// [`S3_SECRET`], a default StorageLocation `main` on the environment's S3 under `prefix`, and
/// for each of `clusters` (of the environment) a kubeconfig Secret `<name>-kubeconfig` and a
/// ManagedCluster, which `customize` may change before it is applied.
pub async fn create_project(
    mgmt: &Client,
    state: &backup_localenv::env_state::EnvState,
    project: &str,
    prefix: &str,
    clusters: &[&str],
    customize: impl Fn(&ClusterState, &mut Value),
) -> Result<()> {
    backup_localenv::crds::install_crds(mgmt, &backup_api::crds()).await?;
    create_namespace(mgmt, project).await?;
    secret(
        mgmt,
        project,
        S3_SECRET,
        "cloud",
        s3_credentials(&state.s3).as_bytes(),
    )
    .await?;
    apply(
        &Api::<StorageLocation>::namespaced(mgmt.clone(), project),
        &s3_location(&state.s3, "main", prefix, S3_SECRET),
    )
    .await?;
    let managed: Api<ManagedCluster> = Api::namespaced(mgmt.clone(), project);
    for name in clusters {
        let info = state.cluster(name)?;
        let kubeconfig = std::fs::read(&info.inline_kubeconfig)
            .with_context(|| format!("reading {}", info.inline_kubeconfig.display()))?;
        let secret_name = format!("{name}-kubeconfig");
        secret(mgmt, project, &secret_name, "kubeconfig", &kubeconfig).await?;
        let mut cluster = managed_cluster(name, &secret_name, json!({}));
        customize(info, &mut cluster);
        apply(&managed, &cluster).await?;
    }
    Ok(())
}

/// Creates namespace `name` (nothing if it exists).
pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    apply(&api, &ns).await
}

/// Deletes namespace `name` of a project and waits until it is gone. Our objects in it carry the
/// controller's finalizer; when no controller runs they would keep the namespace Terminating
/// forever, so their finalizers are released first (nothing is deleted from storage by that).
pub async fn delete_project(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    release_finalizers::<EtcdBackupConfig>(client, name).await?;
    release_finalizers::<ClusterRestore>(client, name).await?;
    release_finalizers::<ClusterBackup>(client, name).await?;
    release_finalizers::<ManagedCluster>(client, name).await?;
    release_finalizers::<StorageLocation>(client, name).await?;
    delete_namespace(client, name, timeout).await
}

/// Deletes namespace `name` and waits until it is gone.
pub async fn delete_namespace(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting namespace {name}")),
    }
    let start = Instant::now();
    while api.get_opt(name).await?.is_some() {
        ensure!(
            start.elapsed() < timeout,
            "namespace {name} was not deleted within {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Removes every finalizer from the objects of kind `K` in `namespace`.
async fn release_finalizers<K>(client: &Client, namespace: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let names: Vec<String> = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|o| {
                o.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty())
            })
            .filter_map(|o| o.metadata.name)
            .collect(),
        // The CRD is not installed: there is nothing of this kind.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let patch = json!({"metadata": {"finalizers": null}});
    let results: Vec<Result<()>> = futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            let patch = patch.clone();
            async move {
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(anyhow::Error::from(e).context(format!(
                        "releasing the finalizers of {} {name}",
                        K::kind(&())
                    ))),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The controller binary running as a child process, scoped to one project namespace on
/// `mgmt` (its Lease lives there too). Dropping it kills the process.
pub struct ControllerProcess {
    child: Option<Child>,
    /// Its process id.
    pub pid: u32,
    /// Its admin address (`/livez`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts `binary run` with the default flags (only the cluster, namespace and admin address
    /// given), logging to `log`, and waits until its `/readyz` answers.
    pub async fn start(
        binary: &Path,
        mgmt: &ClusterState,
        namespace: &str,
        log: PathBuf,
    ) -> Result<Self> {
        Self::start_with(binary, mgmt, namespace, log, &[]).await
    }

    /// [`ControllerProcess::start`] with `extra` flags (e.g. `--api-addr`).
    pub async fn start_with(
        binary: &Path,
        mgmt: &ClusterState,
        namespace: &str,
        log: PathBuf,
        extra: &[&str],
    ) -> Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let admin: SocketAddr =
            format!("127.0.0.1:{}", backup_localenv::http::free_port()?).parse()?;
        let child = Command::new(binary)
            .args(["run", "--kubeconfig"])
            .arg(&mgmt.kubeconfig)
            .args(["--context", &mgmt.context])
            .args(["--namespace", namespace, "--lease-namespace", namespace])
            .args(["--admin-addr", &admin.to_string()])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = ControllerProcess {
            pid: child.id(),
            child: Some(child),
            admin,
            log,
        };
        let start = Instant::now();
        loop {
            if matches!(
                backup_localenv::http::http_get(admin, "/readyz"),
                Ok((200, _))
            ) {
                return Ok(process);
            }
            if let Some(child) = process.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the controller exited at start ({status}); its log {}:\n{}",
                    process.log.display(),
                    process.log_tail(20)
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the controller's /readyz did not answer within 60 s; its log {}:\n{}",
                    process.log.display(),
                    process.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its `/metrics` text.
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = backup_localenv::http::http_get(self.admin, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        Ok(body)
    }

    /// SIGTERM, then up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the controller did not stop within 10 s of SIGTERM; killing it");
        child.kill()?;
        child.wait()?;
        Ok(())
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
