//! Wiring: the management client, the admin server, leader election, and one kube-runtime
//! `Controller` per kind, run only while this replica holds the Lease.
//!
//! Reconciles are triggered by changes, never by a polling loop: a ClusterBackup is woken at
//! its next firing (the reconcile's requeue), by its runs (progress and completion), by changes
//! to the ManagedClusters and StorageLocations of its namespace, and by a slow storage resync;
//! StorageLocations and ManagedClusters also when the Secrets they reference change, where the
//! controller may watch Secrets. The Helm chart grants it none: a project lets it `get` its own
//! by name (its consent), so there they are read again at each probe and each run instead.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{FutureExt, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::admission;
use crate::clock::{Clock, SystemClock};
use crate::context::{Context, Settings, Stores};
use crate::lease::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{
    self, cluster_backup, cluster_migration, cluster_restore, etcd_backup, etcd_restore,
    managed_cluster, management_backup, restore_drill, storage_location,
};
use crate::runs::Runs;
use backup_api::{
    ClusterBackup, ClusterMigration, ClusterRestore, EtcdBackupConfig, EtcdRestore, ManagedCluster,
    ManagementBackup, RestoreDrill, StorageLocation,
};
use kube::runtime::controller::Action;

/// What kube's runtime needs of a kind to watch it, cache it and reconcile it.
pub(crate) trait Watched:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// How `backup-controller run` was configured.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Kubeconfig of the management cluster; in-cluster config (or `$KUBECONFIG`) when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig.
    pub context: Option<String>,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub admin_addr: SocketAddr,
    /// The dashboard (JSON API and page); not served when `None`.
    pub api: Option<ApiConfig>,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    pub identity: String,
    /// Whether to elect a leader (off: this replica always reconciles; for a single replica).
    pub leader_election: bool,
    /// Reconcile only this namespace's objects (one project per controller); all when `None`.
    pub namespace: Option<String>,
    /// Tunables.
    pub settings: Settings,
    /// The admission webhook, when served.
    pub webhook: Option<WebhookConfig>,
}

/// Where and how the dashboard is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Its address.
    pub addr: SocketAddr,
    /// TLS, or plain HTTP.
    pub transport: ApiTransport,
    /// The audience tokens must be issued for, when set.
    pub audience: Option<String>,
    /// The key sealing the page's session cookies (shared by replicas); random when `None`.
    pub session_key: Option<crate::web::session::SessionKey>,
}

/// How the dashboard's connections are carried.
#[derive(Debug, Clone)]
pub enum ApiTransport {
    /// TLS, with the certificate and key in PEM files (read again when they change).
    Tls {
        /// The chain.
        cert: PathBuf,
        /// Its key.
        key: PathBuf,
    },
    /// Plain HTTP, asked for by name (local use).
    PlainHttp,
}

/// Where and how the admission webhook is served.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Its HTTPS address.
    pub addr: SocketAddr,
    /// Its certificate.
    pub certificate: WebhookCertificate,
    /// The URL to register in a ValidatingWebhookConfiguration (outside a chart).
    pub register: Option<String>,
}

/// The webhook's certificate.
#[derive(Debug, Clone)]
pub enum WebhookCertificate {
    /// Made at start for `host`, and registered with the URL.
    SelfSigned {
        /// The IP address or DNS name the API server calls.
        host: String,
    },
    /// PEM files (a chart's Secret).
    Files {
        /// The chain.
        cert: PathBuf,
        /// Its key.
        key: PathBuf,
        /// The CA that signed it.
        ca: PathBuf,
    },
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    config: RunConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let client = management_client(&config).await?;
    // The Lease is renewed over connections of its own: a burst of reconciles (every cluster
    // after an election) must not queue the renewal behind it and cost the lease.
    let lease_client = management_client(&config).await?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = serve_admin(&config, metrics.clone(), ready.clone(), &stop).await?;
    // The dashboard runs on every replica: it reads from its own watches and caches and writes
    // through the API server.
    let web = match &config.api {
        Some(api) => Some(serve_dashboard(&config, api, &client, &metrics, &stop).await?),
        None => None,
    };

    let webhook = match &config.webhook {
        Some(webhook) => Some(serve_webhook(&config, webhook, &client, &stop).await?),
        None => None,
    };

    wait_for_api(&client, stopped(&stop)).await;
    if let Some(WebhookConfig {
        register: Some(url),
        ..
    }) = &config.webhook
    {
        let ca = webhook
            .as_ref()
            .map(|(_, ca)| ca.as_str())
            .unwrap_or_default();
        admission::register::register(&client, url, ca, config.namespace.as_deref()).await?;
    }
    ready.store(true, Ordering::Relaxed);

    let (leading_tx, leading) = watch::channel(!config.leader_election);
    // Without an election the sender stays here, alive until the run ends: this replica
    // leads for good.
    let election = if config.leader_election {
        let lease = LeaseConfig::new(&config.lease_namespace, &config.identity);
        Some(tokio::spawn(lease::run(
            lease_client,
            lease,
            leading_tx,
            stopped(&stop),
        )))
    } else {
        None
    };
    reconcile_while_leading(&client, &config, &clock, &metrics, stop, leading).await;
    if let Some(election) = election {
        let _ = election.await;
    }
    let _ = admin.await;
    for served in web.into_iter().chain(webhook.map(|(served, _)| served)) {
        let _ = served.await;
    }
    Ok(())
}

/// Serves the admission webhook until `stop`; with it, the CA to trust it by.
async fn serve_webhook(
    config: &RunConfig,
    webhook: &WebhookConfig,
    client: &kube::Client,
    stop: &watch::Receiver<bool>,
) -> Result<(Served, String)> {
    let (tls, ca) = match &webhook.certificate {
        WebhookCertificate::SelfSigned { host } => {
            let identity = crate::tls::Identity::self_signed(host)?;
            let ca = identity.ca_pem.clone();
            (identity.server_config()?, ca)
        }
        WebhookCertificate::Files { cert, key, ca } => (
            crate::tls::Reloading::server_config(cert, key)?,
            crate::tls::Identity::ca_from_file(ca)?,
        ),
    };
    let tcp = tokio::net::TcpListener::bind(webhook.addr)
        .await
        .with_context(|| format!("binding the webhook address {}", webhook.addr))?;
    let listener = crate::tls::TlsListener::start(tcp, tls)?;
    tracing::info!(addr = %webhook.addr, namespace = ?config.namespace, "admission webhook listening (https, /validate)");
    let router = admission::router(admission::Webhook {
        client: client.clone(),
    });
    let stopped = stopped(stop);
    let served = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
    });
    Ok((served, ca))
}

/// Resolves once `stop` turns true.
fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// A server's task, ending with the server.
type Served = tokio::task::JoinHandle<std::io::Result<()>>;

/// Serves `/livez`, `/readyz` and `/metrics` until `stop`.
async fn serve_admin(
    config: &RunConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stop: &watch::Receiver<bool>,
) -> Result<Served> {
    let listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding the admin address {}", config.admin_addr))?;
    tracing::info!(addr = %config.admin_addr, "admin server listening (/livez, /readyz, /metrics)");
    let router = admin::router(AdminState { metrics, ready });
    let stopped = stopped(stop);
    Ok(tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
    }))
}

/// Serves the dashboard (JSON API and page) as `api` says until `stop`.
async fn serve_dashboard(
    config: &RunConfig,
    api: &ApiConfig,
    client: &kube::Client,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Result<Served> {
    let addr = api.addr;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the API address {addr}"))?;
    let session_key = match &api.session_key {
        Some(key) => key.clone(),
        None => crate::web::session::SessionKey::random()
            .context("reading a random session key from /dev/urandom")?,
    };
    let sign_in = crate::web::SignIn {
        session_key,
        cookies: crate::web::session::Cookies {
            secure: matches!(api.transport, ApiTransport::Tls { .. }),
        },
        audience: api.audience.clone(),
    };
    let state = crate::web::WebState::start(
        client.clone(),
        config.namespace.as_deref(),
        sign_in,
        config.settings.tenancy.clone(),
        metrics.clone(),
    );
    let router = crate::web::router(state);
    let stopped = stopped(stop);
    Ok(match &api.transport {
        ApiTransport::Tls { cert, key } => {
            let tls = crate::tls::Reloading::server_config(cert, key)
                .context("the dashboard's certificate (--api-tls-cert-file/--api-tls-key-file)")?;
            let listener = crate::tls::TlsListener::start(tcp, tls)?;
            tracing::info!(%addr, "dashboard listening (https: /ui, /api/v1/...)");
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
        ApiTransport::PlainHttp => {
            tracing::warn!(%addr, "dashboard listening over plain HTTP (--api-plain-http): for local use only");
            tokio::spawn(async move {
                axum::serve(tcp, router)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
    })
}

/// Runs the controllers during each term of leadership, until `stop`. A term ends when the
/// lease is lost; its reconciles and every run they started stop with it.
async fn reconcile_while_leading(
    client: &kube::Client,
    config: &RunConfig,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut leading: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { return },
        }
        metrics.set_leader(true);
        tracing::info!(identity = %config.identity, "reconciling as the leader");
        let (runs, triggers) = Runs::new();
        let term = controllers(
            client.clone(),
            config,
            clock.clone(),
            metrics.clone(),
            runs.clone(),
            triggers,
        );
        // Whether the election ended (it only does when stopping): then so does the loop.
        let election_ended = tokio::select! {
            _ = term => false,
            _ = stop.wait_for(|s| *s) => false,
            lost = leading.wait_for(|l| !*l) => {
                if lost.is_ok() {
                    tracing::warn!("leadership lost: stopped reconciling and every running backup");
                }
                lost.is_err()
            }
        };
        // Dropping the controllers stopped their reconciles; stop the runs they started.
        runs.abort_all();
        metrics.set_leader(false);
        if election_ended || *stop.borrow() {
            return;
        }
    }
}

/// A client for the management cluster, from `--kubeconfig`/`--context` or the default
/// kubeconfig / in-cluster service account.
async fn management_client(config: &RunConfig) -> Result<kube::Client> {
    Ok(match &config.kubeconfig {
        Some(path) => {
            backup_kube::kubeconfig::client_from_file(path, config.context.as_deref()).await?
        }
        None => backup_kube::kubeconfig::client_from_default(config.context.as_deref()).await?,
    })
}

/// How many objects of one kind reconcile at once: enough to keep a fleet busy, few enough
/// that hundreds of clusters probed after an election do not flood the management API.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Waits until the management API answers (so `/readyz` means something).
async fn wait_for_api(client: &kube::Client, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    loop {
        match client.apiserver_version().await {
            Ok(v) => {
                tracing::info!(version = %v.git_version, "management cluster reachable");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "management cluster not reachable yet"),
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// A hash of what matters to others about an object: its generation and labels (not its
/// status), so status-only updates of hundreds of clusters do not wake every ClusterBackup.
fn spec_and_labels<K: Resource>(object: &K) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.meta().generation.hash(&mut hasher);
    object.meta().labels.hash(&mut hasher);
    object.meta().deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// [`spec_and_labels`] plus the finalizers: what a kind's own reconcile reacts to. The kube
/// finalizer helper waits for the watch event of the finalizer it added, so that must pass.
fn spec_labels_and_finalizers<K: Resource>(object: &K) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    spec_and_labels(object).hash(&mut hasher);
    object.meta().finalizers.hash(&mut hasher);
    Some(hasher.finish())
}

/// The objects of `api`, cached in `writer`'s store, as they change other than in status;
/// `listed` turns true once the store holds a complete listing.
fn own_changes<K>(
    api: Api<K>,
    wc: &watcher::Config,
    writer: reflector::store::Writer<K>,
    listed: watch::Sender<bool>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    reflector::reflector(writer, watcher(api, wc.clone()))
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                listed.send_replace(true);
            }
        })
        .applied_objects()
        .predicate_filter(spec_labels_and_finalizers, PredicateConfig::default())
}

/// The controllers, one per kind, run until one of them ends (they end only if their watches do).
async fn controllers(
    client: kube::Client,
    config: &RunConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    runs: Runs,
    triggers: crate::runs::Triggers,
) {
    let (kinds, stores) = Kinds::watch(&client, config.namespace.as_deref(), triggers).await;
    let settings = config.settings.clone();
    let ctx = Context::new(
        client,
        clock,
        metrics,
        stores,
        runs,
        settings,
        &config.identity,
    );
    let ctx = Arc::new(ctx);
    let mut work = kinds.run(&ctx);
    // Leader-only work beside the controllers: it ends with them when the term does.
    let identity = config.identity.clone();
    work.push(reconcile::expiry_collector::run(ctx, identity).boxed());
    future::select_all(work).await;
}

/// One controller per kind, each with the watches that wake it.
struct Kinds {
    locations: Controller<StorageLocation>,
    clusters: Controller<ManagedCluster>,
    backups: Controller<ClusterBackup>,
    restores: Controller<ClusterRestore>,
    migrations: Controller<ClusterMigration>,
    etcd_configs: Controller<EtcdBackupConfig>,
    etcd_restores: Controller<EtcdRestore>,
    management_backups: Controller<ManagementBackup>,
    drills: Controller<RestoreDrill>,
}

impl Kinds {
    /// The controllers of `namespace`'s objects (all namespaces' when `None`), and the stores
    /// the reconcilers read the others from.
    async fn watch(
        client: &kube::Client,
        namespace: Option<&str>,
        triggers: crate::runs::Triggers,
    ) -> (Self, Stores) {
        let wc = watcher::Config::default();
        let watch_secrets = may_watch_secrets(client, namespace).await;
        let secrets = watch_secrets.then(|| api::<PartialObjectMeta<Secret>>(client, namespace));
        // Locations, clusters and restores write progress or probe times into their status on
        // every reconcile; those writes must not wake them (a tight loop), so they run from a
        // stream of their own changes.
        let (locations, location_store, locations_listed) = on_own_changes(client, namespace, &wc);
        let (clusters, cluster_store, clusters_listed) = on_own_changes(client, namespace, &wc);
        let (restores, _, _) = on_own_changes::<ClusterRestore>(client, namespace, &wc);
        let (store, watched) = (&location_store, secrets.clone());
        let locations = woken_by_secrets(locations, store, watched, &wc, location_secrets);
        let clusters = woken_by_secrets(clusters, &cluster_store, secrets, &wc, cluster_secrets);
        // ClusterBackups look again when their runs progress or end, and when a location or
        // cluster of their namespace changed (their reconcilers wake them, see
        // `Context::wake_backups_in`).
        let backups = Controller::new(api::<ClusterBackup>(client, namespace), wc.clone())
            .reconcile_on(tokio_stream_of(triggers.backups));
        let stores = Stores {
            locations: location_store,
            clusters: cluster_store,
            backups: backups.store(),
            locations_listed,
            clusters_listed,
        };
        let kinds = Kinds {
            locations,
            clusters,
            backups,
            restores,
            // Migrations follow their children: the ClusterBackup and ClusterRestore they own.
            migrations: Controller::new(api::<ClusterMigration>(client, namespace), wc.clone())
                .owns(api::<ClusterBackup>(client, namespace), wc.clone())
                .owns(api::<ClusterRestore>(client, namespace), wc.clone()),
            // Etcd configs and management backups look again when their run ended (to write
            // its outcome), and at their next firing.
            etcd_configs: Controller::new(api(client, namespace), wc.clone())
                .reconcile_on(tokio_stream_of(triggers.etcd)),
            // Restores of etcd are validated here and carried out by the agent next to etcd.
            etcd_restores: Controller::new(api(client, namespace), wc.clone()),
            // Drills look again at their next firing, and soon while clusters wait for a
            // backup; while their task runs, its status writes wake them to no effect.
            drills: Controller::new(api(client, namespace), wc.clone()),
            management_backups: Controller::new(api(client, namespace), wc)
                .reconcile_on(tokio_stream_of(triggers.management)),
        };
        (kinds, stores)
    }

    /// Each kind's controller, running its reconciler with `ctx`.
    fn run(self, ctx: &Arc<Context>) -> Vec<future::BoxFuture<'static, ()>> {
        use self::{
            cluster_backup as backup, cluster_migration as migration, cluster_restore as restore,
            etcd_backup as etcd, management_backup as management, storage_location as location,
        };
        vec![
            run_kind(
                self.locations,
                location::CONTROLLER,
                location::reconcile,
                ctx,
            ),
            run_kind(
                self.clusters,
                managed_cluster::CONTROLLER,
                managed_cluster::reconcile,
                ctx,
            ),
            run_kind(self.backups, backup::CONTROLLER, backup::reconcile, ctx),
            run_kind(self.restores, restore::CONTROLLER, restore::reconcile, ctx),
            run_kind(
                self.migrations,
                migration::CONTROLLER,
                migration::reconcile,
                ctx,
            ),
            run_kind(self.etcd_configs, etcd::CONTROLLER, etcd::reconcile, ctx),
            run_kind(
                self.etcd_restores,
                etcd_restore::CONTROLLER,
                etcd_restore::reconcile,
                ctx,
            ),
            run_kind(
                self.management_backups,
                management::CONTROLLER,
                management::reconcile,
                ctx,
            ),
            run_kind(
                self.drills,
                restore_drill::CONTROLLER,
                restore_drill::reconcile,
                ctx,
            ),
        ]
    }
}

/// A controller of `K` driven by the changes of `K` other than in status, with its store and
/// a flag that turns true once the store holds a complete listing.
fn on_own_changes<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    wc: &watcher::Config,
) -> (Controller<K>, reflector::Store<K>, watch::Receiver<bool>)
where
    K: Watched + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let (store, writer) = reflector::store();
    let (listed_tx, listed) = watch::channel(false);
    let changes = own_changes(api::<K>(client, namespace), wc, writer, listed_tx);
    (
        Controller::for_stream(changes, store.clone()),
        store,
        listed,
    )
}

/// A Secret changed: the objects of `controller` whose `references` name it look again
/// (credentials, encryption identities, kubeconfigs). Without `secrets` (they may not be
/// watched) the controller is unchanged.
fn woken_by_secrets<K>(
    controller: Controller<K>,
    store: &reflector::Store<K>,
    secrets: Option<Api<PartialObjectMeta<Secret>>>,
    wc: &watcher::Config,
    references: fn(&K) -> Vec<&str>,
) -> Controller<K>
where
    K: Watched,
{
    let Some(secrets) = secrets else {
        return controller;
    };
    let store = store.clone();
    controller.watches(secrets, wc.clone(), move |secret| {
        let name = secret.name_any();
        store
            .state()
            .iter()
            .filter(|o| o.namespace() == secret.namespace() && references(o).contains(&&*name))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// The Secrets a StorageLocation reads: its credentials and its encryption identity.
fn location_secrets(location: &StorageLocation) -> Vec<&str> {
    let identity = location
        .spec
        .encryption
        .as_ref()
        .and_then(|e| e.identity_secret.as_ref());
    [location.spec.credential.as_ref(), identity]
        .into_iter()
        .flatten()
        .map(|reference| reference.name.as_str())
        .collect()
}

/// The Secret a ManagedCluster reads: its kubeconfig.
fn cluster_secrets(cluster: &ManagedCluster) -> Vec<&str> {
    vec![cluster.spec.kubeconfig.name.as_str()]
}

/// Runs one kind's controller with bounded concurrency until its watches end: `reconcile`
/// per object, the object's backoff forgotten when it succeeds, and the shared error policy.
fn run_kind<K, Fut>(
    controller: Controller<K>,
    name: &'static str,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
    ctx: &Arc<Context>,
) -> future::BoxFuture<'static, ()>
where
    K: Watched,
    Fut: Future<Output = crate::error::Result<Action>> + Send + 'static,
{
    controller
        .with_config(controller_config())
        .run(
            move |object, ctx| {
                let reconciled = reconcile(object.clone(), ctx.clone());
                async move {
                    let result = reconciled.await;
                    if result.is_ok() {
                        ctx.backoff
                            .reset(&ObjectRef::from_obj(object.as_ref()).to_string());
                    }
                    result
                }
            },
            move |object, error, ctx| reconcile::error_policy(name, object.as_ref(), error, &ctx),
            ctx.clone(),
        )
        .for_each(|_| future::ready(()))
        .boxed()
}

/// Whether this controller may list and watch Secrets where it reconciles (asked with
/// SelfSubjectAccessReviews). Only then are they watched: under the Helm chart it may only get
/// a project's Secrets by name, and a watch would be refused (403) over and over.
async fn may_watch_secrets(client: &kube::Client, namespace: Option<&str>) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for verb in ["list", "watch"] {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    resource: Some("secrets".into()),
                    namespace: namespace.map(str::to_string),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match reviews.create(&Default::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => {
                tracing::info!(
                    "Secrets are not watched (this controller may not {verb} them): \
                     locations and clusters read theirs again at each probe"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "asking whether Secrets may be watched failed; not watching them");
                return false;
            }
        }
    }
    true
}

/// Every controller's configuration: bounded concurrency.
fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY)
}

/// The API of `K` in `namespace`, or in every namespace.
pub(crate) fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A stream of what arrives on `receiver`.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
