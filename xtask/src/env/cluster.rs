//! One cluster on loopback: its etcd, kube-apiserver and kube-controller-manager, started in that
//! order, each waited on until healthy, each retried on fresh ports if it lost a port race.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::certs::Pki;
use super::health;
use super::kubeconfig;
use super::kubernetes_build::KubeBinaries;
use super::ports::PortPicker;
use super::process::{self, Spec, Started};
use backup_localenv::env_state::{ClusterState, Ports, ProcessState};

/// What the API servers write to their audit log: who created, changed or deleted our kinds,
/// and as whom (the dashboard writes as the signed-in person; tests check the log says so).
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources: [{group: backupfleet.dev}]
  - level: None
";

/// How often a component is restarted on new ports after losing a port race.
const PORT_ATTEMPTS: usize = 3;

/// Everything clusters of one environment share.
pub struct Shared<'a> {
    /// The environment directory (absolute).
    pub dir: &'a Path,
    /// kube-apiserver and kube-controller-manager.
    pub bins: &'a KubeBinaries,
    /// CA, serving certificate, service-account keys.
    pub pki: &'a Pki,
    /// Hands out distinct free ports across all clusters.
    pub ports: &'a Mutex<PortPicker>,
}

/// Starts cluster `name` and waits until it serves; `previous` ports are reused when free.
pub fn start(
    shared: &Shared<'_>,
    name: &str,
    role: &str,
    previous: Option<Ports>,
) -> Result<ClusterState> {
    let dir = shared.dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let token = super::certs::random_hex(24)?;
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, format!("{token},admin,admin,\"system:masters\"\n"))?;
    let audit_policy = dir.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY)?;
    let audit_log = dir.join("audit.log");
    let mut processes = Vec::new();

    // etcd.
    let etcd_data = dir.join("etcd");
    let (_etcd, etcd_ports) = start_with_retry(
        shared.ports,
        &[
            previous.map(|p| p.etcd_client),
            previous.map(|p| p.etcd_peer),
        ],
        |p| Spec {
            name: format!("{name}/etcd"),
            program: PathBuf::from("/usr/bin/etcd"),
            args: vec![
                format!("--name={name}"),
                format!("--data-dir={}", etcd_data.display()),
                format!("--listen-client-urls=http://127.0.0.1:{}", p[0]),
                format!("--advertise-client-urls=http://127.0.0.1:{}", p[0]),
                format!("--listen-peer-urls=http://127.0.0.1:{}", p[1]),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", p[1]),
                format!("--initial-cluster={name}=http://127.0.0.1:{}", p[1]),
                "--snapshot-count=10000".into(),
                "--log-level=warn".into(),
            ],
            log: dir.join("etcd.log"),
            pid_file: dir.join("etcd.pid"),
        },
        Duration::from_secs(30),
        |p| health::ok(&etcd_health(p[0]), None, None),
    )?;
    let etcd_endpoint = format!("http://127.0.0.1:{}", etcd_ports[0]);
    processes.push(record(
        &dir,
        "etcd",
        "/usr/bin/etcd",
        etcd_ports[0],
        etcd_health(etcd_ports[0]),
    )?);

    // kube-apiserver.
    let pki = shared.pki;
    let ca = pki.ca_cert.as_path();
    let (_apiserver, api_port) = start_with_retry(
        shared.ports,
        &[previous.map(|p| p.apiserver)],
        |p| Spec {
            name: format!("{name}/kube-apiserver"),
            program: shared.bins.apiserver.clone(),
            args: vec![
                format!("--etcd-servers={etcd_endpoint}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={}", p[0]),
                "--insecure-port=0".into(),
                format!("--cert-dir={}", dir.join("apiserver-certs").display()),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                format!("--client-ca-file={}", pki.ca_cert.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-key-file={}", pki.sa_pub.display()),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.sa_key.display()
                ),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-maxsize=50".into(),
                "--audit-log-maxbackup=1".into(),
            ],
            log: dir.join("kube-apiserver.log"),
            pid_file: dir.join("kube-apiserver.pid"),
        },
        Duration::from_secs(180),
        |p| {
            health::ok(
                &format!("https://127.0.0.1:{}/readyz", p[0]),
                Some(ca),
                Some(&token),
            )
        },
    )?;
    let apiserver_url = format!("https://127.0.0.1:{}", api_port[0]);
    processes.push(record(
        &dir,
        "kube-apiserver",
        &shared.bins.apiserver,
        api_port[0],
        format!("{apiserver_url}/readyz"),
    )?);

    let kubeconfig_path = shared.dir.join(format!("{name}.kubeconfig"));
    let entry = kubeconfig::Entry {
        name,
        server: &apiserver_url,
        ca_file: ca,
        token: &token,
    };
    kubeconfig::write(&kubeconfig_path, &[entry], name)?;
    let inline_kubeconfig = shared.dir.join(format!("{name}.inline.kubeconfig"));
    kubeconfig::write_inline(&inline_kubeconfig, &entry)?;

    // kube-controller-manager: namespace deletion, garbage collection, service accounts.
    let (mut cm, cm_port) = start_with_retry(
        shared.ports,
        &[previous.map(|p| p.controller_manager)],
        |p| Spec {
            name: format!("{name}/kube-controller-manager"),
            program: shared.bins.controller_manager.clone(),
            args: vec![
                format!("--kubeconfig={}", kubeconfig_path.display()),
                format!("--authentication-kubeconfig={}", kubeconfig_path.display()),
                format!("--authorization-kubeconfig={}", kubeconfig_path.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", p[0]),
                "--port=0".into(),
                format!(
                    "--cert-dir={}",
                    dir.join("controller-manager-certs").display()
                ),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                "--controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token"
                    .into(),
                "--use-service-account-credentials=false".into(),
                format!(
                    "--service-account-private-key-file={}",
                    pki.sa_key.display()
                ),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
            ],
            log: dir.join("kube-controller-manager.log"),
            pid_file: dir.join("kube-controller-manager.pid"),
        },
        Duration::from_secs(90),
        |p| health::ok(&cm_health(p[0]), Some(ca), None),
    )?;
    processes.push(record(
        &dir,
        "kube-controller-manager",
        &shared.bins.controller_manager,
        cm_port[0],
        cm_health(cm_port[0]),
    )?);

    // The service-account machinery works once `default/default` exists (made by the
    // controller-manager in the namespace the apiserver bootstrapped).
    let sa_url = format!("{apiserver_url}/api/v1/namespaces/default/serviceaccounts/default");
    cm.wait_ready(Duration::from_secs(60), || {
        Ok(health::ok(&sa_url, Some(ca), Some(&token)))
    })
    .with_context(|| format!("{name}: waiting for service account default/default"))?;

    Ok(ClusterState {
        name: name.to_owned(),
        role: role.to_owned(),
        apiserver_url,
        token,
        ca_file: pki.ca_cert.clone(),
        kubeconfig: kubeconfig_path,
        inline_kubeconfig,
        context: name.to_owned(),
        etcd_endpoint,
        audit_log,
        ports: Ports {
            etcd_client: etcd_ports[0],
            etcd_peer: etcd_ports[1],
            apiserver: api_port[0],
            controller_manager: cm_port[0],
        },
        processes,
    })
}

/// etcd's health URL.
fn etcd_health(port: u16) -> String {
    format!("http://127.0.0.1:{port}/health")
}

/// kube-controller-manager's health URL.
fn cm_health(port: u16) -> String {
    format!("https://127.0.0.1:{port}/healthz")
}

/// The state record of a component just started (pid read back from its pid file).
fn record(
    dir: &Path,
    component: &str,
    program: impl AsRef<Path>,
    port: u16,
    health_url: String,
) -> Result<ProcessState> {
    let pid_file = dir.join(format!("{component}.pid"));
    let pid =
        process::read_pid(&pid_file).with_context(|| format!("reading {}", pid_file.display()))?;
    let cluster = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ProcessState {
        name: format!("{cluster}/{component}"),
        program: program.as_ref().to_path_buf(),
        pid,
        pid_file,
        log: dir.join(format!("{component}.log")),
        port,
        health_url,
    })
}

/// Picks ports (the `preferred` ones where free), spawns `spec(ports)` and waits for
/// `ready(ports)`. When the process dies because a port was taken meanwhile, tries again on new
/// ports; any other failure is returned with the process's log tail.
pub fn start_with_retry(
    ports: &Mutex<PortPicker>,
    preferred: &[Option<u16>],
    spec: impl Fn(&[u16]) -> Spec,
    timeout: Duration,
    ready: impl Fn(&[u16]) -> bool,
) -> Result<(Started, Vec<u16>)> {
    let mut last_error = anyhow!("no attempt made");
    for attempt in 0..PORT_ATTEMPTS {
        let ports = {
            let mut picker = ports.lock().map_err(|_| anyhow!("port picker poisoned"))?;
            preferred
                .iter()
                .map(|p| picker.pick(if attempt == 0 { *p } else { None }))
                .collect::<Result<Vec<u16>>>()?
        };
        let spec = spec(&ports);
        let mut started = process::spawn(&spec)?;
        match started.wait_ready(timeout, || Ok(ready(&ports))) {
            Ok(()) => return Ok((started, ports)),
            Err(err) if process::is_port_collision(&spec.log) => {
                println!(
                    "{}: a port was taken meanwhile ({ports:?}); retrying on new ports",
                    spec.name
                );
                let _ = process::terminate(started.pid, Duration::from_secs(5));
                last_error = err;
            }
            Err(err) => {
                let _ = process::terminate(started.pid, Duration::from_secs(5));
                return Err(err);
            }
        }
    }
    Err(last_error.context(format!("gave up after {PORT_ATTEMPTS} port collisions")))
}
