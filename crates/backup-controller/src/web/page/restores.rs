//! Restores from the page: a dry run whose plan is shown first, the restore itself, and the
//! project's restores (reloading while one runs).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use super::overview::text;
use super::{CsrfForm, error_page, esc, layout, signed_in, signed_in_form};
use crate::web::WebState;
use crate::web::auth::{Action, require};
use crate::web::error::ApiError;
use crate::web::handlers::create_restore_object;
use backup_api::{ClusterRestore, DASHBOARD_PLAN_LABEL, FleetPhase};

/// How long the page waits for a dry run's plan.
const PLAN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A restore's name: unique enough for one person's clicks, a valid DNS label.
fn restore_name(prefix: &str) -> String {
    format!("{prefix}-{}", Timestamp::now().as_millisecond())
}

/// `POST .../backups/{name}/plan`: a dry run; its plan is shown before anything is restored.
pub async fn plan(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match signed_in_form(&state, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (caller, csrf, session) = (&signed.caller, &signed.csrf, signed.shown());
    let dry = restore_name("plan");
    let planned = async {
        require(
            &state,
            caller,
            &ns,
            Action::on("list", "clusterbackups"),
            Some(Action::on("create", "clusterrestores")),
        )
        .await?;
        let body = json!({"metadata": {"name": dry, "labels": {DASHBOARD_PLAN_LABEL: "true"}},
            "spec": {"source": {"cluster": cluster, "backupName": name}, "dryRun": true}});
        create_restore_object(&state, caller, &ns, &body).await?;
        wait_for_restore(&state, &ns, &dry).await
    };
    let restore = match planned.await {
        Ok(r) => r,
        Err(e) => return error_page(e, session),
    };
    let result = &restore["status"]["clusters"][0];
    let plan = &result["plan"];
    let items: String = plan["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&i["action"]),
                text(&i["resource"]),
                text(&i["name"])
            )
        })
        .collect();
    let (e_ns, e_cluster, e_name) = (esc(&ns), esc(&cluster), esc(&name));
    let body = format!(
        "<p>Dry run of restoring <strong>{e_name}</strong> into <strong>{e_cluster}</strong>: \
         {} to create, {} to update, {} to skip. Nothing has been changed yet.</p>\
         <table><thead><tr><th>Action</th><th>Resource</th><th>Name</th></tr></thead>\
         <tbody>{items}</tbody></table>\
         <form method=\"post\" action=\"/ui/projects/{e_ns}/clusters/{e_cluster}/backups/{e_name}/restore\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Restore now</button></form>",
        text(&plan["create"]),
        text(&plan["update"]),
        text(&plan["skip"]),
        esc(csrf)
    );
    Html(layout("Restore plan", session, &body, false)).into_response()
}

/// `POST .../backups/{name}/restore`: the restore itself, after its plan was shown.
pub async fn restore(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let caller = match signed_in_form(&state, &headers, &form.csrf).await {
        Ok(s) => s.caller,
        Err(r) => return r,
    };
    let created = async {
        require(
            &state,
            &caller,
            &ns,
            Action::on("list", "clusterbackups"),
            Some(Action::on("create", "clusterrestores")),
        )
        .await?;
        let body = json!({"metadata": {"name": restore_name("restore")},
            "spec": {"source": {"cluster": cluster, "backupName": name}}});
        create_restore_object(&state, &caller, &ns, &body).await
    };
    match created.await {
        Ok(_) => Redirect::to(&format!("/ui/projects/{ns}/restores")).into_response(),
        Err(e) => error_page(e, None),
    }
}

/// Waits until ClusterRestore `name` has finished; its JSON.
async fn wait_for_restore(state: &WebState, ns: &str, name: &str) -> Result<Value, ApiError> {
    let api: Api<ClusterRestore> = Api::namespaced(state.client.clone(), ns);
    let deadline = tokio::time::Instant::now() + PLAN_WAIT;
    loop {
        let restore = api
            .get(name)
            .await
            .map_err(|e| ApiError::upstream(format!("reading ClusterRestore {name}: {e}")))?;
        let status = restore.status.clone().unwrap_or_default();
        if status.completion_timestamp.is_some() {
            return serde_json::to_value(restore)
                .map_err(|e| ApiError::upstream(format!("ClusterRestore {name}: {e}")));
        }
        if let Some(ready) = backup_api::status::find(&status.conditions, backup_api::status::READY)
            && !ready.is_true()
        {
            return Err(ApiError::bad_request(format!(
                "{}: {}",
                ready.reason, ready.message
            )));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::upstream(format!(
                "the dry run {name} did not finish within {PLAN_WAIT:?}; see `kubectl -n {ns} get clusterrestore {name}`"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// `GET /ui/projects/{ns}/restores`: the project's restores, refreshing while one runs.
pub async fn restores(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (caller, session) = (&signed.caller, signed.shown());
    if let Err(e) = require(
        &state,
        caller,
        &ns,
        Action::on("list", "clusterrestores"),
        None,
    )
    .await
    {
        return error_page(e, session);
    }
    let listed = match Api::<ClusterRestore>::namespaced(state.client.clone(), &ns)
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l,
        Err(e) => {
            return error_page(
                ApiError::upstream(format!("listing restores: {e}")),
                session,
            );
        }
    };
    let running = listed.items.iter().any(|r| {
        r.status
            .as_ref()
            .and_then(|s| s.phase.as_ref())
            .is_some_and(|p| matches!(p, FleetPhase::New | FleetPhase::InProgress))
    });
    let rows: String = listed.items.iter().map(restore_row).collect();
    let e_ns = esc(&ns);
    let body = format!(
        "<p><a href=\"/ui/projects/{e_ns}\">← {e_ns}</a></p><table><thead><tr><th>Restore</th>\
         <th>Backup</th><th>Phase</th><th></th><th>Clusters (items)</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    );
    Html(layout(
        &format!("Restores of {ns}"),
        session,
        &body,
        running,
    ))
    .into_response()
}

/// A restore's table row: its name, backup, phase, whether it is a dry run, and each
/// cluster's phase and items.
fn restore_row(r: &ClusterRestore) -> String {
    let status = serde_json::to_value(&r.status).unwrap_or(Value::Null);
    let clusters: Vec<String> = status["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} ({}/{})",
                text(&c["cluster"]),
                text(&c["phase"]),
                text(&c["itemsRestored"]),
                text(&c["totalItems"])
            )
        })
        .collect();
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&r.metadata.name.clone().unwrap_or_default()),
        text(&status["backupName"]),
        text(&status["phase"]),
        if r.spec.options.dry_run {
            "dry run"
        } else {
            ""
        },
        clusters.join("<br>")
    )
}
