//! One conformance suite for both implementations of `backup_core::BackupEngine`: the agentless
//! [`DirectEngine`] and the Velero [`InClusterEngine`]. Every check below is a generic function
//! over an [`EngineHarness`] and runs once per engine, so both are held to the same contract
//! where their behaviour overlaps: names, filters, phases, progress and error kinds.
//!
//! The direct harness just waits for the engine's own task. The in-cluster harness plays
//! Velero's part exactly as Velero does (Velero's CRDs have no status subresource, so status is
//! written by patching the object): New → InProgress (start time, expiration, progress) →
//! Finalizing → Completed (completion time), and a DeleteBackupRequest is processed by moving it
//! to InProgress, deleting the Backup and marking the request Processed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use backup_core::{BackupEngine, BackupSpec, BackupStatus, EngineError, LabelSelector, Phase, Ttl};
use backup_storage::Repository;
use backup_velero::api::{Backup, DeleteBackupRequest};
use backup_velero::direct::DirectEngine;
use backup_velero::in_cluster::InClusterEngine;
use backup_velero::in_cluster::translate::object_name;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tests::velero::{self, Setup};
use tests::{TestNamespace, shared, unique_name};

const TIMEOUT: Duration = Duration::from_secs(120);

/// What a check needs from an engine's test set-up.
trait EngineHarness {
    type Engine: BackupEngine;
    /// The engine under test.
    fn engine(&self) -> &Self::Engine;
    /// A valid spec whose backup completes successfully with at least one item.
    fn spec(&self) -> BackupSpec;
    /// Brings a started backup to its terminal phase, the way this engine's world does, and
    /// returns every status `observe_backup` reported on the way (the terminal one last).
    async fn drive_to_completion(&self, name: &str) -> Result<Vec<BackupStatus>>;
    /// Lets an accepted deletion take effect (the in-cluster engine deletes asynchronously).
    async fn finish_deletion(&self, name: &str) -> Result<()>;
    /// Removes what the set-up created.
    async fn cleanup(self) -> Result<()>;
}

// ---------------------------------------------------------------------------------------------
// Direct engine harness
// ---------------------------------------------------------------------------------------------

struct DirectHarness {
    engine: DirectEngine,
    ns: TestNamespace,
}

impl DirectHarness {
    async fn new(test: &str) -> Result<Self> {
        let client = shared()?.client("c1").await?;
        let ns = TestNamespace::create(&client, &format!("conf-{test}")).await?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        for name in ["one", "two"] {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(name.into());
            cm.data = Some(BTreeMap::from([("k".to_string(), name.to_string())]));
            cms.create(&PostParams::default(), &cm).await?;
        }
        let engine = DirectEngine::new(client, repository(test)?);
        Ok(DirectHarness { engine, ns })
    }
}

/// A repository on the S3 server, in a scope of its own.
fn repository(test: &str) -> Result<Repository> {
    let s3 = shared()?.s3();
    let options = BTreeMap::from([
        ("s3Url".to_string(), s3.endpoint.clone()),
        ("region".to_string(), s3.region.clone()),
        ("s3ForcePathStyle".to_string(), "true".to_string()),
        ("access_key_id".to_string(), s3.access_key_id.clone()),
        (
            "secret_access_key".to_string(),
            s3.secret_access_key.clone(),
        ),
    ]);
    Ok(Repository::open(&s3.location, &options)?.scoped_str("e2e", &unique_name("conf", test))?)
}

impl EngineHarness for DirectHarness {
    type Engine = DirectEngine;

    fn engine(&self) -> &DirectEngine {
        &self.engine
    }

    fn spec(&self) -> BackupSpec {
        let mut spec = BackupSpec::default();
        spec.filter.included_namespaces = vec![self.ns.name.clone()];
        spec
    }

    async fn drive_to_completion(&self, name: &str) -> Result<Vec<BackupStatus>> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let st = self.engine.observe_backup(name).await?;
            let terminal = st.phase.is_terminal();
            seen.push(st);
            if terminal {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                bail!("backup {name} not terminal within {TIMEOUT:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish_deletion(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    async fn cleanup(self) -> Result<()> {
        self.ns.delete().await
    }
}

// ---------------------------------------------------------------------------------------------
// In-cluster engine harness (plays Velero)
// ---------------------------------------------------------------------------------------------

struct InClusterHarness {
    s: Setup,
}

impl InClusterHarness {
    async fn new(test: &str) -> Result<Self> {
        let s = velero::setup(&format!("conf-{test}"), "c1").await?;
        velero::available_location(&s).await?;
        Ok(InClusterHarness { s })
    }

    fn backups(&self) -> Api<Backup> {
        Api::namespaced(self.s.client.clone(), &self.s.ns.name)
    }

    async fn velero_step(
        &self,
        name: &str,
        status: serde_json::Value,
        seen: &mut Vec<BackupStatus>,
    ) -> Result<()> {
        let velero_name = object_name("c1", "backup", name);
        velero::velero_sets_status(&self.backups(), &velero_name, status).await?;
        seen.push(self.s.engine.observe_backup(name).await?);
        Ok(())
    }
}

impl EngineHarness for InClusterHarness {
    type Engine = InClusterEngine;

    fn engine(&self) -> &InClusterEngine {
        &self.s.engine
    }

    fn spec(&self) -> BackupSpec {
        let mut spec = BackupSpec::default();
        spec.filter.included_namespaces = vec![self.s.ns.name.clone()];
        spec
    }

    async fn drive_to_completion(&self, name: &str) -> Result<Vec<BackupStatus>> {
        let mut seen = vec![self.s.engine.observe_backup(name).await?];
        // Velero's backup controller: validation passed, the backup starts.
        self.velero_step(
            name,
            json!({
                "phase": "InProgress", "version": 1, "formatVersion": "1.1.0",
                "startTimestamp": "2026-01-01T00:00:00Z", "expiration": "2026-01-31T00:00:00Z",
                "progress": {"totalItems": 3, "itemsBackedUp": 0}
            }),
            &mut seen,
        )
        .await?;
        self.velero_step(
            name,
            json!({"progress": {"totalItems": 3, "itemsBackedUp": 2}}),
            &mut seen,
        )
        .await?;
        // Items done, no async plugin operations: Finalizing, then Completed.
        self.velero_step(
            name,
            json!({"phase": "Finalizing", "progress": {"totalItems": 3, "itemsBackedUp": 3}}),
            &mut seen,
        )
        .await?;
        self.velero_step(
            name,
            json!({"phase": "Completed", "completionTimestamp": "2026-01-01T00:02:00Z"}),
            &mut seen,
        )
        .await?;
        Ok(seen)
    }

    async fn finish_deletion(&self, name: &str) -> Result<()> {
        // Velero's deletion controller: the request goes InProgress, the backup's data and the
        // Backup object go, the request ends Processed.
        let velero_name = object_name("c1", "backup", name);
        let requests: Api<DeleteBackupRequest> =
            Api::namespaced(self.s.client.clone(), &self.s.ns.name);
        let lp = ListParams::default().labels(&format!("velero.io/backup-name={velero_name}"));
        let pending = requests.list(&lp).await?.items;
        ensure!(
            pending.len() == 1,
            "expected one DeleteBackupRequest for {velero_name}, got {}",
            pending.len()
        );
        let request = pending[0].name_any();
        velero::velero_sets_status(&requests, &request, json!({"phase": "InProgress"})).await?;
        self.backups()
            .delete(&velero_name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting Backup {velero_name}"))?;
        velero::velero_sets_status(&requests, &request, json!({"phase": "Processed"})).await?;
        Ok(())
    }

    async fn cleanup(self) -> Result<()> {
        self.s.ns.delete().await
    }
}

// ---------------------------------------------------------------------------------------------
// The shared contract
// ---------------------------------------------------------------------------------------------

/// Order of the phases a successful backup moves through; a phase never goes backwards.
fn rank(p: Phase) -> Result<u8> {
    Ok(match p {
        Phase::New => 0,
        Phase::InProgress => 1,
        Phase::WaitingForPluginOperations => 2,
        Phase::Finalizing => 3,
        Phase::Completed => 4,
        other => bail!("unexpected phase {other:?} on the way to Completed"),
    })
}

fn assert_not_found(e: &EngineError, name: &str) {
    assert_eq!(
        e,
        &EngineError::NotFound {
            what: "backup",
            name: name.to_string(),
        }
    );
    assert_eq!(e.metric_label(), "not_found");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains(name), "{e}");
}

/// Names: a backup is observed under the name it was started with; restarting the same name
/// with the same spec is idempotent (while running and when done), with another spec it is
/// `AlreadyExists` naming the backup; other names stay unknown.
async fn check_names(h: &impl EngineHarness) -> Result<()> {
    let e = h.engine();
    let spec = h.spec();
    e.start_backup("named", &spec).await?;
    let st = e.observe_backup("named").await?;
    assert!(
        !matches!(
            st.phase,
            Phase::Failed | Phase::FailedValidation | Phase::PartiallyFailed
        ),
        "{st:?}"
    );
    e.start_backup("named", &spec).await?;

    let mut other = spec.clone();
    other.ttl = Ttl::parse("1h")?;
    let err = e.start_backup("named", &other).await.unwrap_err();
    // Both engines name the backup as the caller did, not the object behind it.
    assert!(
        matches!(&err, EngineError::AlreadyExists { what: "backup", name } if name == "named"),
        "{err:?}"
    );
    assert_eq!(err.metric_label(), "already_exists");
    assert!(!err.is_retryable());
    assert_not_found(&e.observe_backup("named-2").await.unwrap_err(), "named-2");

    let seen = h.drive_to_completion("named").await?;
    assert_eq!(seen.last().map(|s| s.phase), Some(Phase::Completed));
    e.start_backup("named", &spec).await?;
    assert_eq!(e.observe_backup("named").await?.phase, Phase::Completed);
    let err = e.start_backup("named", &other).await.unwrap_err();
    assert_eq!(err.metric_label(), "already_exists", "{err}");
    Ok(())
}

/// Filters: a filter Velero's validation rejects (labelSelector together with
/// orLabelSelectors) is `Invalid` up front and leaves nothing behind.
async fn check_invalid_filter(h: &impl EngineHarness) -> Result<()> {
    let e = h.engine();
    let mut spec = h.spec();
    let sel = |k: &str| LabelSelector {
        match_labels: BTreeMap::from([(k.to_string(), "x".to_string())]),
        ..Default::default()
    };
    spec.filter.label_selector = Some(sel("a"));
    spec.filter.or_label_selectors = vec![sel("b"), sel("c")];
    let err = e.start_backup("bad-filter", &spec).await.unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
    assert_eq!(err.metric_label(), "invalid");
    assert!(!err.is_retryable());
    assert_not_found(
        &e.observe_backup("bad-filter").await.unwrap_err(),
        "bad-filter",
    );
    // The name is still free: the valid spec is accepted.
    e.start_backup("bad-filter", &h.spec()).await?;
    let seen = h.drive_to_completion("bad-filter").await?;
    assert_eq!(seen.last().map(|s| s.phase), Some(Phase::Completed));
    Ok(())
}

/// Phases and progress: New/InProgress/… → Completed without going back, items done never
/// decreasing, and at the end all items done, with start and completion times.
async fn check_lifecycle(h: &impl EngineHarness) -> Result<()> {
    let e = h.engine();
    e.start_backup("life", &h.spec()).await?;
    let seen = h.drive_to_completion("life").await?;
    ensure!(!seen.is_empty());
    let (last, running) = seen.split_last().context("no status")?;
    for st in running {
        assert!(!st.phase.is_terminal(), "{st:?}");
    }
    for w in seen.windows(2) {
        assert!(rank(w[0].phase)? <= rank(w[1].phase)?, "{seen:#?}");
        assert!(
            w[0].progress.items_done <= w[1].progress.items_done,
            "progress went back: {seen:#?}"
        );
    }
    assert_eq!(last.phase, Phase::Completed, "{last:?}");
    assert!(last.phase.is_successful());
    assert!(last.progress.total_items > 0, "{last:?}");
    assert_eq!(last.progress.items_done, last.progress.total_items);
    assert!(
        last.errors.is_empty() && last.validation_errors.is_empty(),
        "{last:?}"
    );
    let started = last.started.context("no start time")?;
    let completed = last.completed.context("no completion time")?;
    assert!(started <= completed, "{last:?}");
    // Terminal means stable.
    assert_eq!(&e.observe_backup("life").await?, last);
    Ok(())
}

/// Errors: an unknown backup is `NotFound` (named, not retryable) for observe and delete.
async fn check_unknown(h: &impl EngineHarness) -> Result<()> {
    let e = h.engine();
    assert_not_found(
        &e.observe_backup("never-existed").await.unwrap_err(),
        "never-existed",
    );
    assert_not_found(
        &e.delete_backup("never-existed").await.unwrap_err(),
        "never-existed",
    );
    Ok(())
}

/// Deletion: a completed backup can be deleted; once the deletion took effect it is
/// `NotFound` for observe and for a second delete.
async fn check_delete(h: &impl EngineHarness) -> Result<()> {
    let e = h.engine();
    e.start_backup("gone", &h.spec()).await?;
    let seen = h.drive_to_completion("gone").await?;
    assert_eq!(seen.last().map(|s| s.phase), Some(Phase::Completed));
    e.delete_backup("gone").await?;
    h.finish_deletion("gone").await?;
    assert_not_found(&e.observe_backup("gone").await.unwrap_err(), "gone");
    assert_not_found(&e.delete_backup("gone").await.unwrap_err(), "gone");
    Ok(())
}

/// Listing: finished backups are listed with their recorded phase, counts and labels, oldest
/// first; a selector keeps only the backups whose labels match; a deleted backup is gone.
async fn check_list(h: &impl EngineHarness) -> Result<()> {
    let e = h.engine();
    let labelled = |schedule: &str| {
        let mut spec = h.spec();
        spec.labels
            .insert("velero.io/schedule-name".into(), schedule.into());
        spec
    };
    e.start_backup("listed-one", &labelled("nightly")).await?;
    h.drive_to_completion("listed-one").await?;
    e.start_backup("listed-two", &labelled("nightly")).await?;
    h.drive_to_completion("listed-two").await?;
    e.start_backup("other", &labelled("weekly")).await?;
    h.drive_to_completion("other").await?;

    let nightly = LabelSelector::parse("velero.io/schedule-name=nightly")?;
    let listed = e.list_backups(&nightly).await?;
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["listed-one", "listed-two"], "{listed:#?}");
    for b in &listed {
        assert_eq!(b.phase, Phase::Completed, "{b:?}");
        assert!(
            b.items_backed_up > 0 && b.items_backed_up == b.total_items,
            "{b:?}"
        );
        assert_eq!(b.labels["velero.io/schedule-name"], "nightly");
        assert!(b.started.is_some() && b.completed.is_some(), "{b:?}");
    }
    let all = e.list_backups(&LabelSelector::default()).await?;
    assert!(all.iter().any(|b| b.name == "other"), "{all:#?}");

    e.delete_backup("listed-one").await?;
    h.finish_deletion("listed-one").await?;
    let after: Vec<String> = e
        .list_backups(&nightly)
        .await?
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(after, ["listed-two"]);
    Ok(())
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod direct {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() -> Result<()> {
                    let h = DirectHarness::new(stringify!($check)).await?;
                    super::$check(&h).await?;
                    h.cleanup().await
                }
            )*
        }
        mod in_cluster {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() -> Result<()> {
                    let h = InClusterHarness::new(stringify!($check)).await?;
                    super::$check(&h).await?;
                    h.cleanup().await
                }
            )*
        }
    };
}

conformance!(
    check_names,
    check_invalid_filter,
    check_lifecycle,
    check_unknown,
    check_delete,
    check_list,
);
