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
use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::clock::{Clock, SystemClock};
use crate::context::{Context, Settings, Stores};
use crate::lease::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{
    self, Backoff, cluster_backup, cluster_migration, cluster_restore, etcd_restore,
    managed_cluster, management_backup, storage_location,
};
use crate::runs::Runs;
use backup_api::{
    ClusterBackup, ClusterMigration, ClusterRestore, EtcdRestore, ManagedCluster, StorageLocation,
};

/// How `backup-controller run` was configured.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Kubeconfig of the management cluster; in-cluster config (or `$KUBECONFIG`) when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig.
    pub context: Option<String>,
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub admin_addr: SocketAddr,
    /// Where the dashboard (JSON API and page) is served; not at all when `None`.
    pub api_addr: Option<SocketAddr>,
    /// The key signing the page's session cookies (shared by replicas); random when `None`.
    pub session_key: Option<crate::web::session::SessionKey>,
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
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding the admin address {}", config.admin_addr))?;
    tracing::info!(addr = %config.admin_addr, "admin server listening (/livez, /readyz, /metrics)");
    let admin_stop = stopped(stop_rx.clone());
    let admin = tokio::spawn(async move {
        axum::serve(listener, admin::router(admin_state))
            .with_graceful_shutdown(admin_stop)
            .await
    });

    // The dashboard runs on every replica: it reads from its own watches and caches and writes
    // through the API server.
    let web = match config.api_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the API address {addr}"))?;
            tracing::info!(%addr, "dashboard listening (/ui, /api/v1/...)");
            let session_key = match &config.session_key {
                Some(key) => key.clone(),
                None => crate::web::session::SessionKey::random()
                    .context("reading a random session key from /dev/urandom")?,
            };
            let state = crate::web::WebState::start(
                client.clone(),
                config.namespace.as_deref(),
                session_key,
                config.settings.tenancy.clone(),
            );
            let web_stop = stopped(stop_rx.clone());
            Some(tokio::spawn(async move {
                axum::serve(listener, crate::web::router(state))
                    .with_graceful_shutdown(web_stop)
                    .await
            }))
        }
        None => None,
    };

    wait_for_api(&client, stopped(stop_rx.clone())).await;
    ready.store(true, Ordering::Relaxed);

    let (leading_tx, mut leading) = watch::channel(!config.leader_election);
    let election = if config.leader_election {
        let lease = LeaseConfig::new(&config.lease_namespace, &config.identity);
        Some(tokio::spawn(lease::run(
            lease_client,
            lease,
            leading_tx,
            stopped(stop_rx.clone()),
        )))
    } else {
        None
    };

    let mut stop = stop_rx.clone();
    loop {
        // Wait to lead.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break },
        }
        metrics.set_leader(true);
        tracing::info!(identity = %config.identity, "reconciling as the leader");
        let (runs, triggers) = Runs::new();
        let term = controllers(
            client.clone(),
            &config,
            clock.clone(),
            metrics.clone(),
            runs.clone(),
            triggers,
        );
        tokio::select! {
            _ = term => {}
            _ = stop.wait_for(|s| *s) => {}
            _ = leading.wait_for(|l| !*l) => {
                tracing::warn!("leadership lost: stopped reconciling and every running backup");
            }
        }
        // Dropping the controllers stopped their reconciles; stop the runs they started.
        runs.abort_all();
        metrics.set_leader(false);
        if *stop.borrow() {
            break;
        }
    }
    if let Some(election) = election {
        let _ = election.await;
    }
    let _ = admin.await;
    if let Some(web) = web {
        let _ = web.await;
    }
    Ok(())
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
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
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
    let namespace = config.namespace.as_deref();
    let wc = watcher::Config::default();
    let secrets: Api<PartialObjectMeta<Secret>> = api(&client, namespace);
    let watch_secrets = may_watch_secrets(&client, namespace).await;

    // Locations and clusters write a probe time into their status on every reconcile, so they
    // must not be woken by their own status writes (that would probe in a tight loop).
    let (location_store, writer) = reflector::store();
    let (listed, locations_listed) = watch::channel(false);
    let locations = Controller::for_stream(
        own_changes(
            api::<StorageLocation>(&client, namespace),
            &wc,
            writer,
            listed,
        ),
        location_store.clone(),
    )
    .with_config(controller_config());
    let (cluster_store, writer) = reflector::store();
    let (listed, clusters_listed) = watch::channel(false);
    let clusters = Controller::for_stream(
        own_changes(
            api::<ManagedCluster>(&client, namespace),
            &wc,
            writer,
            listed,
        ),
        cluster_store.clone(),
    )
    .with_config(controller_config());
    let backups = Controller::new(api::<ClusterBackup>(&client, namespace), wc.clone())
        .with_config(controller_config());
    let backup_store = backups.store();
    // Restores write their progress into their status; those writes must not wake them.
    let (restore_store, writer) = reflector::store();
    let (listed, _) = watch::channel(false);
    let restores = Controller::for_stream(
        own_changes(
            api::<ClusterRestore>(&client, namespace),
            &wc,
            writer,
            listed,
        ),
        restore_store,
    )
    .with_config(controller_config());

    // A Secret changed: its locations and clusters look again (credentials, kubeconfigs).
    let by_secret_locations = location_store.clone();
    let locations = match watch_secrets {
        false => locations,
        true => locations.watches(secrets.clone(), wc.clone(), move |secret| {
            by_secret_locations
                .state()
                .iter()
                .filter(|l| {
                    let name = secret.name_any();
                    let named = |reference: Option<&backup_core::CredentialRef>| {
                        reference.is_some_and(|c| c.name == name)
                    };
                    l.namespace() == secret.namespace()
                        && (named(l.spec.credential.as_ref())
                            || named(
                                l.spec
                                    .encryption
                                    .as_ref()
                                    .and_then(|e| e.identity_secret.as_ref()),
                            ))
                })
                .map(|l| ObjectRef::from_obj(l.as_ref()))
                .collect::<Vec<_>>()
        }),
    };
    let by_secret_clusters = cluster_store.clone();
    let clusters = match watch_secrets {
        false => clusters,
        true => clusters.watches(secrets, wc.clone(), move |secret| {
            by_secret_clusters
                .state()
                .iter()
                .filter(|c| {
                    c.namespace() == secret.namespace()
                        && c.spec.kubeconfig.name == secret.name_any()
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        }),
    };

    // ClusterBackups look again when their runs progress or end, and when a location or
    // cluster of their namespace changed (their reconcilers wake them, see
    // `Context::wake_backups_in`).
    let backups = backups.reconcile_on(tokio_stream_of(triggers.backups));
    // Etcd configs look again when their snapshot ended (to write its outcome), and at their
    // next firing.
    let etcd_configs = Controller::new(
        api::<backup_api::EtcdBackupConfig>(&client, namespace),
        wc.clone(),
    )
    .reconcile_on(tokio_stream_of(triggers.etcd))
    .with_config(controller_config());

    // Management backups look again when their run ended, and at their next firing.
    let management_backups = Controller::new(
        api::<backup_api::ManagementBackup>(&client, namespace),
        wc.clone(),
    )
    .reconcile_on(tokio_stream_of(triggers.management))
    .with_config(controller_config());

    // Restores of etcd are validated here and carried out by the agent next to etcd.
    let etcd_restores = Controller::new(api::<EtcdRestore>(&client, namespace), wc.clone())
        .with_config(controller_config());
    // Migrations follow their children: the ClusterBackup and ClusterRestore they own.
    let migrations = Controller::new(api::<ClusterMigration>(&client, namespace), wc.clone())
        .owns(api::<ClusterBackup>(&client, namespace), wc.clone())
        .owns(api::<ClusterRestore>(&client, namespace), wc.clone())
        .with_config(controller_config());

    let stores = Stores {
        locations: location_store,
        clusters: cluster_store,
        backups: backup_store,
        locations_listed,
        clusters_listed,
    };
    let ctx = Arc::new(Context::new(
        client,
        clock,
        metrics,
        stores,
        runs,
        config.settings.clone(),
        &config.identity,
    ));

    let run_locations = locations.run(
        |o, c| with_backoff_reset(storage_location::reconcile(o.clone(), c.clone()), o, c),
        error_policy(storage_location::CONTROLLER),
        ctx.clone(),
    );
    let run_clusters = clusters.run(
        |o, c| with_backoff_reset(managed_cluster::reconcile(o.clone(), c.clone()), o, c),
        error_policy(managed_cluster::CONTROLLER),
        ctx.clone(),
    );
    let run_backups = backups.run(
        |o, c| with_backoff_reset(cluster_backup::reconcile(o.clone(), c.clone()), o, c),
        error_policy(cluster_backup::CONTROLLER),
        ctx.clone(),
    );
    let run_restores = restores.run(
        |o, c| with_backoff_reset(cluster_restore::reconcile(o.clone(), c.clone()), o, c),
        error_policy(cluster_restore::CONTROLLER),
        ctx.clone(),
    );
    let run_migrations = migrations.run(
        |o, c| with_backoff_reset(cluster_migration::reconcile(o.clone(), c.clone()), o, c),
        error_policy(cluster_migration::CONTROLLER),
        ctx.clone(),
    );
    let run_etcd_restores = etcd_restores.run(
        |o, c| with_backoff_reset(etcd_restore::reconcile(o.clone(), c.clone()), o, c),
        error_policy(etcd_restore::CONTROLLER),
        ctx.clone(),
    );
    let run_management = management_backups.run(
        |o, c| with_backoff_reset(management_backup::reconcile(o.clone(), c.clone()), o, c),
        error_policy(management_backup::CONTROLLER),
        ctx.clone(),
    );
    let run_etcd = etcd_configs
        .run(
            |o, c| {
                with_backoff_reset(
                    crate::reconcile::etcd_backup::reconcile(o.clone(), c.clone()),
                    o,
                    c,
                )
            },
            error_policy(crate::reconcile::etcd_backup::CONTROLLER),
            ctx.clone(),
        )
        .map(|_| ())
        .boxed();
    let drain = |s: futures::stream::BoxStream<'static, ()>| s.for_each(|_| future::ready(()));
    tokio::select! {
        _ = drain(run_locations.map(|_| ()).boxed()) => {}
        _ = drain(run_clusters.map(|_| ()).boxed()) => {}
        _ = drain(run_backups.map(|_| ()).boxed()) => {}
        _ = drain(run_restores.map(|_| ()).boxed()) => {}
        _ = drain(run_migrations.map(|_| ()).boxed()) => {}
        _ = drain(run_etcd) => {}
        _ = drain(run_etcd_restores.map(|_| ()).boxed()) => {}
        _ = drain(run_management.map(|_| ()).boxed()) => {}
    }
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
fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The shared backoff of all controllers (keys are object references, unique across kinds).
fn backoff() -> &'static Backoff {
    static BACKOFF: std::sync::OnceLock<Backoff> = std::sync::OnceLock::new();
    BACKOFF.get_or_init(Backoff::default)
}

/// Resets an object's backoff when its reconcile succeeds.
async fn with_backoff_reset<K: Resource<DynamicType = ()>>(
    reconcile: impl Future<Output = crate::error::Result<kube::runtime::controller::Action>>,
    object: Arc<K>,
    _ctx: Arc<Context>,
) -> crate::error::Result<kube::runtime::controller::Action> {
    let result = reconcile.await;
    if result.is_ok() {
        backoff().reset(&ObjectRef::from_obj(object.as_ref()).to_string());
    }
    result
}

/// The error policy of `controller`.
fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &crate::Error, Arc<Context>) -> kube::runtime::controller::Action {
    move |object, error, ctx| {
        reconcile::error_policy(controller, object.as_ref(), error, &ctx, backoff())
    }
}

/// A stream of what arrives on `receiver`.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
