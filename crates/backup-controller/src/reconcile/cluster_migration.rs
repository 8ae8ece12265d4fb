//! ClusterMigration: create the one-time ClusterBackup of the source, then, once its run
//! completed, the ClusterRestore of that backup into the targets; gather both into the
//! migration's status. What to create and what the status says is decided by [`plan`], pure;
//! this reads the children and carries the plan out.
//!
//! The children carry the migration as their controlling owner, so changes to them wake the
//! migration, and deleting it deletes them (Kubernetes' garbage collector); the migration needs
//! no finalizer of its own.

pub mod plan;

use std::sync::Arc;

use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::plan::{Child, Plan, PlanInput};
use super::write_status;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use backup_api::cluster_migration::{ClusterMigration, ClusterMigrationStatus};
use backup_api::{ClusterBackup, ClusterRestore};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "clustermigration";

/// Reconciles one ClusterMigration.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "ClusterMigration", namespace = %migration.metadata.namespace.as_deref().unwrap_or_default(), name = %migration.metadata.name.as_deref().unwrap_or_default()))]
pub async fn reconcile(migration: Arc<ClusterMigration>, ctx: Arc<Context>) -> Result<Action> {
    if let Some(later) = super::cached_copy_behind(&ctx, migration.as_ref()) {
        return Ok(later);
    }
    let started = std::time::Instant::now();
    let result = apply(&migration, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

/// One reconcile: validate, read the children, decide with [`plan::plan`], carry it out.
async fn apply(migration: &ClusterMigration, ctx: &Context) -> Result<Action> {
    if migration.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let generation = migration.metadata.generation;
    let previous = migration.status.clone().unwrap_or_default();
    let valid = match migration.spec.validate() {
        Ok(valid) => valid,
        Err(field) => {
            let status = plan::invalid(&previous, generation, now, &field);
            write_changed(ctx, migration, status.as_ref()).await?;
            return Ok(Action::await_change());
        }
    };
    let name = migration.name_any();
    let namespace = migration.namespace().unwrap_or_default();
    let backup = child::<ClusterBackup>(ctx, migration, &namespace).await?;
    let restore = child::<ClusterRestore>(ctx, migration, &namespace).await?;
    let plan = plan::plan(&PlanInput {
        name: &name,
        generation,
        now,
        spec: &migration.spec,
        valid: &valid,
        previous: &previous,
        backup: backup.map(|b| b.status.as_ref()),
        restore: restore.map(|r| r.status.as_ref()),
    });
    carry_out(ctx, migration, &namespace, plan).await?;
    Ok(Action::await_change())
}

/// Carries `plan` out: the children to create, the Event, the status.
async fn carry_out(
    ctx: &Context,
    migration: &ClusterMigration,
    namespace: &str,
    plan: Plan,
) -> Result<()> {
    if let Some(spec) = plan.create_backup {
        let backups: Api<ClusterBackup> = Api::namespaced(ctx.client.clone(), namespace);
        create_child(migration, &backups, spec).await?;
    }
    if let Some(spec) = plan.create_restore {
        let restores: Api<ClusterRestore> = Api::namespaced(ctx.client.clone(), namespace);
        create_child(migration, &restores, spec).await?;
    }
    if let Some(event) = plan.event {
        ctx.event(
            &migration.object_ref(&()),
            event.warning,
            &event.reason,
            "Migrate",
            event.message,
        )
        .await;
    }
    write_changed(ctx, migration, plan.status.as_ref()).await
}

/// Writes `status`, if there is one to write.
async fn write_changed(
    ctx: &Context,
    migration: &ClusterMigration,
    status: Option<&ClusterMigrationStatus>,
) -> Result<()> {
    match status {
        Some(status) => write_status(ctx, migration, status).await,
        None => Ok(()),
    }
}

/// The migration's child of kind `K` (named like it).
async fn child<K>(ctx: &Context, migration: &ClusterMigration, namespace: &str) -> Result<Child<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = migration.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(format!("reading {name} of the migration"), e))?;
    Ok(Child::of(found, migration.uid().as_deref()))
}

/// Creates (server-side apply) the migration's child of kind `K` with `spec`: named and
/// labelled like the migration, which is its controlling owner.
async fn create_child<K>(
    migration: &ClusterMigration,
    api: &Api<K>,
    spec: impl Serialize,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = migration.name_any();
    let owner = migration
        .controller_owner_ref(&())
        .map(|o| vec![o])
        .unwrap_or_default();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": ObjectMeta {
            name: Some(name.clone()),
            owner_references: Some(owner),
            labels: Some([("backupfleet.dev/migration".to_string(), name.clone())].into()),
            ..ObjectMeta::default()
        },
        "spec": spec,
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!("creating {} {name} of the migration", K::kind(&())),
            e,
        )
    })?;
    Ok(())
}
