//! The command line of `backup-controller`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use backup_controller::context::Settings;
use backup_controller::runtime::{
    ApiConfig, ApiTransport, RunConfig, WebhookCertificate, WebhookConfig,
};
use backup_kube::tenancy::TenancyArgs;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "backup-controller",
    version,
    about = "The fleet backup controller: storage locations, managed clusters and scheduled fleet backups (backupfleet.dev/v1alpha1)",
    long_about = "The fleet backup controller for a management cluster.\n\n\
                  It reconciles StorageLocations (probing each for availability), ManagedClusters \
                  (reaching each through the kubeconfig in its Secret) and ClusterBackups (one-time \
                  or scheduled backups of one cluster or a selected fleet, with retention). Install \
                  the CRDs first: `backup-controller crds | kubectl apply -f -`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller (only the replica holding the Lease reconciles).
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition of backupfleet.dev as one YAML stream.
    Crds,
}

#[derive(Args)]
pub struct RunArgs {
    /// Kubeconfig of the management cluster (default: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub admin_addr: SocketAddr,
    /// Address of the dashboard: the web page (`/ui`) and its JSON API (`/api/v1/...`).
    /// Callers sign in with a Kubernetes token and their project's RBAC decides what they see.
    /// Not served when omitted.
    #[arg(long)]
    pub api_addr: Option<SocketAddr>,
    /// The dashboard's TLS certificate chain (PEM), e.g. a Secret's `tls.crt` that
    /// cert-manager renews: read again when it changes.
    #[arg(long, requires_all = ["api_addr", "api_tls_key_file"])]
    pub api_tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM), read again with it.
    #[arg(long, requires = "api_tls_cert_file")]
    pub api_tls_key_file: Option<PathBuf>,
    /// Serve the dashboard over plain HTTP: only for local use (127.0.0.1, or behind a proxy
    /// that terminates TLS on the same host). Session cookies then lose `Secure` and the
    /// `__Host-` prefix.
    #[arg(long, requires = "api_addr", conflicts_with = "api_tls_cert_file")]
    pub api_plain_http: bool,
    /// Accept only tokens issued for this audience (a TokenReview with `audiences`), e.g.
    /// `kubectl create token USER --audience backup-fleet`: such a token cannot be replayed
    /// against the API server, nor an API-server token against the dashboard.
    #[arg(long, requires = "api_addr")]
    pub api_audience: Option<String>,
    /// A file of at least 32 random bytes that signs the page's session cookies; give every
    /// replica the same one (the chart mounts a Secret). Random per process when omitted, so
    /// sessions end on restart and do not move between replicas.
    #[arg(long)]
    pub session_key_file: Option<PathBuf>,
    /// The controller's own namespace (default: $POD_NAMESPACE, else `default`): where its
    /// leader-election Lease lives, and the only namespace whose ManagementBackups are
    /// honoured (they read every project).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (default: $POD_NAME, else hostname-pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Reconcile without electing a leader (only for a single replica).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Reconcile only the objects of this namespace (one project); every namespace by default.
    #[arg(long)]
    pub namespace: Option<String>,
    /// How often each ManagedCluster is checked for reachability (Go duration).
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub cluster_probe_every: Duration,
    /// After each run, uploads that interrupted runs left in the cluster's scope (never
    /// committed, never listed) are removed once untouched for this long (Go duration).
    #[arg(long, default_value = "24h", value_parser = signed_duration)]
    pub orphan_grace: jiff::SignedDuration,
    /// How long a cluster's list of stored runs is trusted before storage is read again
    /// (it is also read after every run).
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub storage_resync: Duration,
    /// How often expired backups are deleted from every Available, ReadWrite StorageLocation
    /// (Go or humantime duration, above zero): every backup in each cluster scope of the
    /// location's project whose TTL ran out, whoever wrote it, except the newest successful
    /// run of each schedule and release backups. Only the leader does it.
    #[arg(long, default_value = "1h", value_parser = gc_interval)]
    pub gc_interval: Duration,
    /// The release this controller runs as (default: its version; the Helm chart passes its
    /// appVersion). ManagementBackups with performOnManagementUpgrade take a backup named
    /// after it when it differs from the release they last saw.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"), value_parser = release)]
    pub release: String,
    /// Take ManagementBackups. They read every Secret that our objects reference, in every
    /// namespace, so they need the platform's grant: the Helm chart's
    /// `managementBackup.readProjectSecrets=true` binds its `<fullname>-project-secrets`
    /// ClusterRole (get on Secrets) cluster-wide and passes this flag, and the two must match.
    /// Off by default: ManagementBackups are refused (`SecretsNotGranted`). With it, the
    /// location each writes to must still encrypt to an age recipient (`EncryptionRequired`).
    #[arg(long)]
    pub management_backup_secrets: bool,
    #[command(flatten)]
    pub tenancy: TenancyArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The admission webhook: who may restore into, or back up, which cluster.
#[derive(Args)]
pub struct WebhookArgs {
    /// Serve the validating admission webhook (HTTPS, `POST /validate`) on this address. It
    /// checks, as the requesting user, the verbs `backup`, `restore` and `restore-privileged`
    /// on the ManagedClusters each ClusterRestore, ClusterMigration, ClusterBackup,
    /// EtcdBackupConfig and EtcdRestore acts on. Needs certificate files, or
    /// --webhook-register to make a self-signed certificate.
    #[arg(long)]
    pub webhook_addr: Option<SocketAddr>,
    /// Outside a chart: keep a ValidatingWebhookConfiguration (`backup-fleet[-NAMESPACE]`,
    /// failurePolicy Fail) pointing at this URL (`https://127.0.0.1:PORT`, the address of
    /// --webhook-addr as the API server reaches it), trusting a certificate made at start for
    /// its host.
    #[arg(long, requires = "webhook_addr")]
    pub webhook_register: Option<String>,
    /// The webhook's certificate chain (PEM), e.g. the chart's Secret's `tls.crt`.
    #[arg(long, requires_all = ["webhook_addr", "webhook_key_file", "webhook_ca_file"])]
    pub webhook_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "webhook_cert_file")]
    pub webhook_key_file: Option<PathBuf>,
    /// The CA the API server trusts the certificate by (PEM; the `caBundle`).
    #[arg(long, requires = "webhook_cert_file")]
    pub webhook_ca_file: Option<PathBuf>,
}

impl WebhookArgs {
    fn into_config(self) -> Result<Option<WebhookConfig>, String> {
        let Some(addr) = self.webhook_addr else {
            return Ok(None);
        };
        let certificate = match (
            self.webhook_cert_file,
            self.webhook_key_file,
            self.webhook_ca_file,
        ) {
            (Some(cert), Some(key), Some(ca)) => WebhookCertificate::Files { cert, key, ca },
            _ => match &self.webhook_register {
                Some(url) => WebhookCertificate::SelfSigned {
                    host: url_host(url)?,
                },
                None => {
                    return Err(
                        "--webhook-addr needs --webhook-cert-file, --webhook-key-file and \
                                --webhook-ca-file, or --webhook-register URL (to make a \
                                certificate the API server is told to trust)"
                            .into(),
                    );
                }
            },
        };
        Ok(Some(WebhookConfig {
            addr,
            certificate,
            register: self.webhook_register,
        }))
    }
}

/// The host of an `https://HOST[:PORT][/path]` URL, for the certificate made for it.
fn url_host(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        format!("--webhook-register {url:?}: the API server calls webhooks over https://")
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    if host.is_empty() {
        return Err(format!("--webhook-register {url:?} names no host"));
    }
    Ok(host.to_string())
}

/// The dashboard's configuration: TLS, or plain HTTP only when asked for by name.
fn api_config(
    addr: Option<SocketAddr>,
    tls: Option<(PathBuf, PathBuf)>,
    plain_http: bool,
    audience: Option<String>,
    session_key: Option<backup_controller::web::session::SessionKey>,
) -> Result<Option<ApiConfig>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let transport = match (tls, plain_http) {
        (Some((cert, key)), _) => ApiTransport::Tls { cert, key },
        (None, true) => ApiTransport::PlainHttp,
        (None, false) => {
            return Err(format!(
                "--api-addr {addr}: the dashboard serves TLS: give --api-tls-cert-file and \
                 --api-tls-key-file (PEM), or --api-plain-http for local use"
            ));
        }
    };
    Ok(Some(ApiConfig {
        addr,
        transport,
        audience,
        session_key,
    }))
}

fn release(text: &str) -> Result<String, String> {
    backup_api::management_backup::release_slug(text)
        .map(|_| text.to_string())
        .map_err(|e| e.message)
}

fn duration(text: &str) -> Result<Duration, String> {
    backup_core::parse_duration(text).map_err(|e| e.to_string())
}

/// A duration above zero: an interval of zero would sweep storage without pause.
fn gc_interval(text: &str) -> Result<Duration, String> {
    let interval = duration(text)?;
    if interval.is_zero() {
        return Err(format!(
            "{text:?} is no interval: give a duration above zero, e.g. 1h or 15m"
        ));
    }
    Ok(interval)
}

fn signed_duration(text: &str) -> Result<jiff::SignedDuration, String> {
    jiff::SignedDuration::try_from(duration(text)?).map_err(|e| e.to_string())
}

impl RunArgs {
    /// The runtime's configuration.
    pub fn into_config(self) -> Result<RunConfig, String> {
        let management_namespace = self.lease_namespace.clone();
        let session_key = match &self.session_key_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("reading --session-key-file {}: {e}", path.display()))?;
                Some(
                    backup_controller::web::session::SessionKey::new(bytes)
                        .map_err(|e| format!("--session-key-file {}: {e}", path.display()))?,
                )
            }
        };
        let identity = self.identity.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "backup-controller".into());
            format!("{host}-{}", std::process::id())
        });
        Ok(RunConfig {
            webhook: self.webhook.into_config()?,
            kubeconfig: self.kubeconfig,
            context: self.context,
            admin_addr: self.admin_addr,
            api: api_config(
                self.api_addr,
                self.api_tls_cert_file.zip(self.api_tls_key_file),
                self.api_plain_http,
                self.api_audience,
                session_key,
            )?,
            lease_namespace: self.lease_namespace,
            identity,
            leader_election: !self.no_leader_election,
            namespace: self.namespace,
            settings: Settings {
                cluster_probe_every: self.cluster_probe_every,
                storage_resync: self.storage_resync,
                orphan_grace: self.orphan_grace,
                management_namespace,
                release: self.release,
                tenancy: self.tenancy.policy(),
                management_backup_secrets: self.management_backup_secrets,
                gc_interval: self.gc_interval,
                ..Settings::default()
            },
        })
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Prints every CRD as one YAML stream; a reader that stops early (`| head`) is not an error.
pub fn print_crds() -> Result<(), String> {
    use std::io::Write;
    let yaml = backup_api::crds_yaml().map_err(|e| e.to_string())?;
    match std::io::stdout().lock().write_all(yaml.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_serves_tls_unless_plain_http_is_asked_for_by_name() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let refused = api_config(Some(addr), None, false, None, None).unwrap_err();
        assert!(
            refused.contains("--api-tls-cert-file") && refused.contains("--api-plain-http"),
            "{refused}"
        );
        let plain = api_config(Some(addr), None, true, None, None)
            .unwrap()
            .unwrap();
        assert!(matches!(plain.transport, ApiTransport::PlainHttp));
        let files = Some(("tls.crt".into(), "tls.key".into()));
        let tls = api_config(Some(addr), files, false, Some("bf".into()), None)
            .unwrap()
            .unwrap();
        assert!(matches!(tls.transport, ApiTransport::Tls { .. }));
        assert_eq!(tls.audience.as_deref(), Some("bf"));
        assert!(api_config(None, None, false, None, None).unwrap().is_none());
    }

    fn run_args(extra: &[&str]) -> Result<RunArgs, String> {
        let args = ["backup-controller", "run"].iter().chain(extra);
        match Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Run(args) => Ok(*args),
            Command::Crds => Err("not run".into()),
        }
    }

    #[test]
    fn the_gc_interval_defaults_to_an_hour_and_takes_go_and_humantime_durations() {
        assert_eq!(
            run_args(&[]).unwrap().gc_interval,
            Duration::from_secs(3600)
        );
        for (text, seconds) in [("2s", 2), ("15m", 900), ("1h30m", 5400), ("1 day", 86_400)] {
            let config = run_args(&["--gc-interval", text])
                .unwrap()
                .into_config()
                .unwrap();
            assert_eq!(
                config.settings.gc_interval,
                Duration::from_secs(seconds),
                "{text}"
            );
        }
    }

    #[test]
    fn a_zero_negative_or_unreadable_gc_interval_is_refused_naming_the_flag_and_the_fix() {
        for (text, says) in [
            ("0s", "above zero"),
            ("0", "above zero"),
            ("-1h", "negative"),
            ("soon", "soon"),
        ] {
            let flag = format!("--gc-interval={text}");
            let Err(refused) = run_args(&[flag.as_str()]) else {
                panic!("--gc-interval {text} was accepted");
            };
            assert!(
                refused.contains("--gc-interval") && refused.contains(says),
                "{text}: {refused}"
            );
        }
    }
}
