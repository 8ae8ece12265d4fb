//! The fleet controller under test: a project namespace on `mgmt` with the secrets a test
//! needs, the controller running as a real process scoped to that namespace, and waits on the
//! objects it writes.
//!
//! Each test gets its own namespace (its project) and its own controller process started with
//! `--namespace <ns> --lease-namespace <ns>`, so tests run in parallel without seeing each
//! other's objects, and a test can `kill -9` its controller without disturbing the others.
//! Objects are handled as JSON (`DynamicObject`) so this crate needs no controller types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup_storage::Repository;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::{TestNamespace, shared, unique_name};

// The field manager tests apply objects (and our CRDs) with. These moved to `backup-localenv`
// (xtask uses them too) and keep their old paths here.
use backup_localenv::crds::MANAGER;
pub use backup_localenv::crds::install_crds;
pub use backup_localenv::http::{
    LoopbackCertificate, free_port, http_get, http_request, https_request,
};
pub use backup_localenv::wait::wait_until;

/// Our API group and version.
pub const API_VERSION: &str = "backupfleet.dev/v1alpha1";
/// The Secret holding the S3 credentials, in Velero's AWS format.
pub const S3_SECRET: &str = "s3-creds";

/// One project: a namespace on `mgmt` holding the S3 credentials and a kubeconfig Secret per
/// user cluster (`c1-kubeconfig`, `c2-kubeconfig`), plus a unique storage prefix.
pub struct Project {
    /// The namespace (the project's name).
    pub ns: TestNamespace,
    /// A client for `mgmt`.
    pub mgmt: Client,
    /// Prefix inside the S3 bucket, unique to this test.
    pub prefix: String,
}

impl Project {
    /// Installs our CRDs and creates the project's namespace and Secrets.
    pub async fn create(test: &str) -> Result<Self> {
        let env = shared()?;
        let mgmt = env.client("mgmt").await?;
        install_crds(&mgmt, &backup_api::crds()).await?;
        let ns = TestNamespace::create(&mgmt, test).await?;
        let project = Project {
            prefix: unique_name("p", test),
            ns,
            mgmt,
        };
        let s3 = env.s3();
        project
            .secret(
                S3_SECRET,
                "cloud",
                format!(
                    "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
                    s3.access_key_id, s3.secret_access_key
                )
                .as_bytes(),
            )
            .await?;
        for cluster in env.user_clusters() {
            let kubeconfig = std::fs::read(&cluster.inline_kubeconfig)
                .with_context(|| format!("reading {}", cluster.inline_kubeconfig.display()))?;
            project
                .secret(
                    &format!("{}-kubeconfig", cluster.name),
                    "kubeconfig",
                    &kubeconfig,
                )
                .await?;
        }
        Ok(project)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.ns.name
    }

    /// Creates or replaces Secret `name` with one `key`.
    pub async fn secret(&self, name: &str, key: &str, value: &[u8]) -> Result<()> {
        let api: Api<Secret> = Api::namespaced(self.mgmt.clone(), self.name());
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "data": {key: k8s_openapi::ByteString(value.to_vec())},
        }))?;
        api.patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("applying Secret {name}"))?;
        Ok(())
    }

    /// The API of our `kind` (plural `plural`) in this namespace.
    pub fn api(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = ApiResource {
            group: "backupfleet.dev".into(),
            version: "v1alpha1".into(),
            api_version: API_VERSION.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        Api::namespaced_with(self.mgmt.clone(), self.name(), &ar)
    }

    /// Applies one of our objects (`{"kind": ..., "metadata": {"name": ...}, "spec": ...}`) by
    /// server-side apply, in this namespace.
    pub async fn apply(&self, object: Value) -> Result<()> {
        let kind = object["kind"]
            .as_str()
            .context("object has no kind")?
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .context("object has no name")?
            .to_string();
        let mut object = object;
        object["apiVersion"] = json!(API_VERSION);
        let api = self.api(&kind, &plural(&kind));
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("applying {kind} {name}"))?;
        Ok(())
    }

    /// A StorageLocation `name` on the shared S3 server, under this test's prefix.
    pub fn s3_location(&self, name: &str, default: bool) -> Result<Value> {
        let s3 = &shared()?.s3();
        Ok(json!({
            "kind": "StorageLocation",
            "metadata": {"name": name},
            "spec": {
                "provider": "aws",
                "objectStorage": {"bucket": s3.bucket, "prefix": self.prefix},
                "config": {"region": s3.region, "s3Url": s3.endpoint, "s3ForcePathStyle": "true"},
                "credential": {"name": S3_SECRET, "key": "cloud"},
                "default": default,
                "validationFrequency": "1m",
            }
        }))
    }

    /// A ManagedCluster `name` reaching user cluster `target` (`c1` or `c2`).
    pub fn cluster(&self, name: &str, target: &str, labels: Value) -> Value {
        json!({
            "kind": "ManagedCluster",
            "metadata": {"name": name, "labels": labels},
            "spec": {"kubeconfig": {"name": format!("{target}-kubeconfig"), "key": "kubeconfig"}}
        })
    }

    /// The repository of cluster `cluster`'s runs: `<bucket>/<prefix>/<namespace>/<cluster>/`.
    pub fn repository(&self, cluster: &str) -> Result<Repository> {
        let s3 = shared()?.s3();
        let options = [
            ("region", s3.region.clone()),
            ("s3Url", s3.endpoint.clone()),
            ("access_key_id", s3.access_key_id.clone()),
            ("secret_access_key", s3.secret_access_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(
            Repository::open(&format!("s3://{}/{}", s3.bucket, self.prefix), &options)?
                .scoped_str(self.name(), cluster)?,
        )
    }

    /// Reads object `name` of `kind` as JSON.
    pub async fn get(&self, kind: &str, name: &str) -> Result<Value> {
        let object = self.api(kind, &plural(kind)).get(name).await?;
        Ok(serde_json::to_value(object)?)
    }

    /// Waits until object `name` of `kind` satisfies `check` (its JSON); returns that JSON.
    pub async fn wait_for(
        &self,
        kind: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let start = Instant::now();
        loop {
            let last = self.get(kind, name).await;
            if let Ok(v) = &last
                && check(v)
            {
                return Ok(v.clone());
            }
            if start.elapsed() > timeout {
                let shown = match last {
                    Ok(v) => serde_json::to_string_pretty(&v["status"])?,
                    Err(e) => format!("{e:#}"),
                };
                bail!(
                    "timed out after {timeout:?} waiting for {kind} {name}: {what}; status:\n{shown}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until ClusterBackup `name` has Completed under `controller`; the name of its
    /// first cluster's last run (the controller's log is in the error when it does not).
    pub async fn completed_run(
        &self,
        name: &str,
        timeout: Duration,
        controller: &ControllerProcess,
    ) -> Result<String> {
        let done = self
            .wait_for(
                "ClusterBackup",
                name,
                timeout,
                "the backup completed",
                |b| b["status"]["phase"] == "Completed",
            )
            .await
            .with_context(|| controller.log_text())?;
        done["status"]["clusters"][0]["lastBackup"]["name"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("ClusterBackup {name} completed without a run: {done}"))
    }

    /// Deletes the namespace (objects with our finalizer are cleaned up by the controller if it
    /// still runs; otherwise the namespace is left for `env down`).
    pub async fn delete(self) -> Result<()> {
        self.ns.delete().await
    }
}

/// The condition `type_` of an object's status, as JSON.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether condition `type_` has `status` (`"True"`, `"False"`) and `reason`.
pub fn has_condition(object: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == status && c["reason"] == reason)
}

/// The plural of one of our kinds.
pub fn plural(kind: &str) -> String {
    format!("{}s", kind.to_ascii_lowercase())
}

/// How a controller process reaches the management cluster, and where its Lease lives.
pub struct Access {
    /// Its kubeconfig.
    pub kubeconfig: PathBuf,
    /// The context to use in it.
    pub context: String,
    /// The namespace of its leader-election Lease (and its ManagementBackups).
    pub lease_namespace: String,
}

/// A controller process scoped to one project namespace. Dropping it kills the process.
pub struct ControllerProcess {
    child: Option<Child>,
    /// Its admin address (`/livez`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// Its identity in the Lease.
    pub identity: String,
    /// Its log file.
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts `binary run` against `mgmt` for `project`, with `extra` arguments, and waits until
    /// its `/readyz` answers.
    pub async fn start(
        binary: &Path,
        project: &Project,
        identity: &str,
        extra: &[&str],
    ) -> Result<Self> {
        Self::start_with_env(binary, project, identity, extra, &[]).await
    }

    /// [`ControllerProcess::start`] with extra environment variables (e.g. `RUST_LOG`).
    pub async fn start_with_env(
        binary: &Path,
        project: &Project,
        identity: &str,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<Self> {
        let env = shared()?;
        let mgmt = env.management()?;
        let access = Access {
            kubeconfig: mgmt.kubeconfig.clone(),
            context: mgmt.context.clone(),
            lease_namespace: project.name().to_string(),
        };
        Self::start_as(binary, project, identity, &access, extra, vars).await
    }

    /// [`ControllerProcess::start_with_env`] with the controller's own credentials and Lease
    /// namespace (e.g. a ServiceAccount token bound to the chart's RBAC).
    pub async fn start_as(
        binary: &Path,
        project: &Project,
        identity: &str,
        access: &Access,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<Self> {
        let env = shared()?;
        let port = free_port()?;
        let admin: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log_dir = env.state.dir.join("controller-logs");
        std::fs::create_dir_all(&log_dir)?;
        let log = log_dir.join(format!("{}-{identity}.log", project.name()));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .args(["run", "--kubeconfig"])
            .arg(&access.kubeconfig)
            .args(["--context", &access.context])
            .args(["--namespace", project.name()])
            .args(["--lease-namespace", &access.lease_namespace])
            .args(["--identity", identity])
            .args(["--admin-addr", &admin.to_string()])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let process = ControllerProcess {
            child: Some(child),
            admin,
            identity: identity.to_string(),
            log,
        };
        wait_until(Duration::from_secs(30), "the controller's /readyz", || {
            let ready = http_get(admin, "/readyz").map(|(code, _)| code == 200);
            async move { Ok(ready.unwrap_or(false)) }
        })
        .await
        .with_context(|| format!("controller log:\n{}", process.log_text()))?;
        Ok(process)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no cleanup, no lease release, runs cut off mid-way.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the controller was already stopped")?;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        Ok(child.wait()?)
    }

    /// GET `path` on the admin server: status code and body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.admin, path)
    }

    /// What the controller logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// One cluster's entry in a ClusterBackup's `status.clusters` (`Null` when it has none).
pub fn runs_of(object: &Value, cluster: &str) -> Value {
    object["status"]["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["cluster"] == cluster))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The names in a cluster's `backups` list of a ClusterBackup's status, newest first.
pub fn listed_runs(object: &Value, cluster: &str) -> Vec<String> {
    runs_of(object, cluster)["backups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one sample (`name{labels}` exactly as exposed) in Prometheus text format.
pub fn metric_value(exposition: &str, sample: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(sample)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

impl Project {
    /// The names of cluster `cluster`'s resource backups in storage, oldest first (what
    /// `backupctl backup list --project <ns> --cluster <cluster>` lists).
    pub async fn stored_runs(&self, cluster: &str) -> Result<Vec<String>> {
        let listing = self
            .repository(cluster)?
            .list(backup_core::BackupKind::Resources)
            .await?;
        anyhow::ensure!(listing.problems.is_empty(), "{:?}", listing.problems);
        Ok(listing
            .manifests
            .iter()
            .map(|m| m.name.to_string())
            .collect())
    }

    /// Every Event of the namespace, as JSON text (to search for what must not be there).
    pub async fn events_json(&self) -> Result<String> {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.mgmt.clone(), self.name());
        let events = api.list(&Default::default()).await?;
        Ok(serde_json::to_string(&events.items)?)
    }

    /// Waits until the namespace's Events mention every one of `texts` (Events are published
    /// beside status writes, not before them); returns them as JSON text.
    pub async fn wait_for_events(&self, timeout: Duration, texts: &[&str]) -> Result<String> {
        wait_until(timeout, &format!("Events mentioning {texts:?}"), || async {
            let events = self.events_json().await?;
            Ok(texts.iter().all(|t| events.contains(t)))
        })
        .await?;
        self.events_json().await
    }
}

impl ControllerProcess {
    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// A ServiceAccount of project `p` bound to a Role with `rules` (JSON), and a token for it
/// (TokenRequest): a user of the project as its RBAC sees them.
pub async fn service_account(p: &Project, name: &str, rules: Value) -> Result<String> {
    let rbac = |kind: &str, plural: &str| ApiResource {
        group: "rbac.authorization.k8s.io".into(),
        version: "v1".into(),
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let apply = |kind: &str, plural: &str, object: Value| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(p.mgmt.clone(), p.name(), &rbac(kind, plural));
        async move {
            api.patch(
                object["metadata"]["name"].as_str().unwrap_or_default(),
                &PatchParams::apply("api-tests").force(),
                &Patch::Apply(&object),
            )
            .await
        }
    };
    Api::<ServiceAccount>::namespaced(p.mgmt.clone(), p.name())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    apply(
        "Role",
        "roles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name}, "rules": rules}),
    )
    .await?;
    apply(
        "RoleBinding",
        "rolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": p.name()}]}),
    )
    .await?;
    let issued = Api::<ServiceAccount>::namespaced(p.mgmt.clone(), p.name())
        .create_token_request(
            name,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            },
        )
        .await?;
    Ok(issued.status.context("no token")?.token)
}

/// A client for the management cluster that authenticates with `token` only.
pub async fn client_with_token(token: &str) -> Result<kube::Client> {
    let mgmt = shared()?.management()?.clone();
    let text = std::fs::read_to_string(&mgmt.kubeconfig)
        .with_context(|| format!("reading {}", mgmt.kubeconfig.display()))?;
    let mut kubeconfig: Value = serde_yaml_ng::from_str(&text)?;
    for user in kubeconfig["users"]
        .as_array_mut()
        .context("the kubeconfig has users")?
    {
        user["user"] = json!({ "token": token });
    }
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&serde_yaml_ng::to_string(&kubeconfig)?)?;
    let options = kube::config::KubeConfigOptions {
        context: Some(mgmt.context.clone()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

/// `token` (a service-account token the management cluster issued) as it is once expired: the
/// same claims with `exp` an hour ago, signed again with the local control plane's
/// service-account key, so the apiserver checks it exactly as its own and refuses it for its
/// age alone (a TokenRequest cannot ask for less than ten minutes).
pub fn expired_copy(token: &str) -> Result<String> {
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a JWT: expected header.claims.signature");
    };
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims)?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let signed = format!(
        "{header}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
    );
    let key_path = crate::env::env_dir().join("pki/sa.key");
    let pem = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let key = RsaKeyPair::from_pkcs8(&STANDARD.decode(der)?)
        .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 RSA key: {e}", key_path.display()))?;
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .map_err(|e| anyhow::anyhow!("signing the token: {e}"))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
