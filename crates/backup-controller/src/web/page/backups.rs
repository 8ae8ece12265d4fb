//! A cluster's backups in storage, and what can be done to them: download, delete, and run a
//! schedule now; and the restore drills that prove them.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::overview::{text, when};
use super::{CsrfForm, error_page, esc, layout, signed_in, signed_in_form};
use crate::web::WebState;
use crate::web::auth::{Action, allowed, require};
use crate::web::handlers::{
    LocationQuery, cluster_backups_data, cluster_listing, delete_stored, drills_data,
    request_run_now, stored_backups, tarball,
};

/// `GET /ui/projects/{ns}/clusters/{cluster}`: the cluster's backups in storage.
pub async fn cluster(
    State(state): State<WebState>,
    Path((ns, cluster)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (caller, csrf, session) = (&signed.caller, &signed.csrf, signed.shown());
    let backups = async {
        require(
            &state,
            caller,
            &ns,
            Action::on("list", "clusterbackups"),
            None,
        )
        .await?;
        let listing =
            cluster_listing(&state, &ns, &cluster, &LocationQuery { location: None }).await?;
        let may_list_drills =
            allowed(&state, caller, &ns, Action::on("list", "restoredrills")).await?;
        let drills = match may_list_drills {
            true => Some(drills_data(&state, &ns).await?),
            false => None,
        };
        Ok::<_, crate::web::error::ApiError>((
            stored_backups(&listing),
            cluster_backups_data(&state, &ns).await?,
            drills,
        ))
    };
    let (backups, schedules, drills) = match backups.await {
        Ok(b) => b,
        Err(e) => return error_page(e, session),
    };
    // Runs under way for this cluster, with their progress; the page's script follows them
    // through the project's event stream and reloads the page when one starts or ends.
    let running = running_runs(&schedules, &cluster);
    let (e_ns, e_cluster) = (esc(&ns), esc(&cluster));
    let rows = backup_rows(&backups, &ns, &cluster, csrf);
    let body = if backups.is_empty() {
        "<p>No backups of this cluster in storage yet.</p>".to_string()
    } else {
        format!(
            "<table><thead><tr><th>Backup</th><th>Phase</th><th>Items</th><th>Size</th>\
             <th>Completed</th><th>Expires</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    Html(layout(
        &format!("Cluster {cluster} of {ns}"),
        session,
        &format!(
            "<p><a href=\"/ui/projects/{e_ns}\">← {e_ns}</a></p>\
             <div id=\"live\" data-cluster=\"{e_cluster}\" \
             data-events=\"/ui/projects/{e_ns}/events\">{}</div>{body}{drills}",
            running,
            drills = match drills {
                Some(drills) => format!(
                    "<h2>Restore drills</h2>{}",
                    super::drills::table(&drills, &cluster)
                ),
                None => String::new(),
            },
        ),
        false,
    ))
    .into_response()
}

/// A `<p>` with a progress bar for each of `cluster`'s runs under way, from the schedules'
/// statuses.
fn running_runs(schedules: &[serde_json::Value], cluster: &str) -> String {
    schedules
        .iter()
        .filter_map(|b| {
            let runs = b["clusters"]
                .as_array()?
                .iter()
                .find(|c| c["cluster"] == cluster)?;
            let last = &runs["lastBackup"];
            matches!(last["phase"].as_str(), Some("New" | "InProgress")).then(|| {
                let (done, total) = (
                    last["itemsBackedUp"].as_u64().unwrap_or(0),
                    last["totalItems"].as_u64().unwrap_or(0),
                );
                let name = esc(last["name"].as_str().unwrap_or_default());
                format!(
                    "<p data-run=\"{name}\">{name} is running: \
                     <progress value=\"{done}\" max=\"{}\"></progress> \
                     <span class=\"count\">{done} of {total} items</span></p>",
                    total.max(1)
                )
            })
        })
        .collect()
}

/// The table rows of the stored `backups`, newest first, each with its download, restore and
/// delete actions.
fn backup_rows(backups: &[serde_json::Value], ns: &str, cluster: &str, csrf: &str) -> String {
    let (e_ns, e_cluster, e_csrf) = (esc(ns), esc(cluster), esc(csrf));
    backups
        .iter()
        .rev()
        .map(|b| {
            let name = esc(b["name"].as_str().unwrap_or_default());
            let base = format!("/ui/projects/{e_ns}/clusters/{e_cluster}/backups/{name}");
            let phase_class = if b["phase"] == "Completed" { "ok" } else { "bad" };
            format!(
                "<tr><td>{name}</td><td class=\"{phase_class}\">{}</td><td>{}</td>{}\
                 <td>{}</td><td>{}</td><td>\
                 <a href=\"{base}/download\">Download</a> \
                 <form class=\"inline\" method=\"post\" action=\"{base}/plan\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{e_csrf}\"><button>Restore…</button></form> \
                 <form class=\"inline\" method=\"post\" action=\"{base}/delete\" \
                 data-confirm=\"Delete backup {name} from storage?\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{e_csrf}\">\
                 <button class=\"danger\">Delete</button></form></td></tr>",
                text(&b["phase"]),
                text(&b["itemsBackedUp"]),
                size_cell(&b["sizeBytes"]),
                when(&b["completed"]),
                when(&b["expiration"]),
            )
        })
        .collect()
}

/// A backup's size as people read it, the exact byte count on hover.
fn size_cell(bytes: &serde_json::Value) -> String {
    match bytes.as_u64() {
        Some(n) => format!(
            "<td class=\"size\" title=\"{n} bytes\">{}</td>",
            backup_core::human_bytes(n)
        ),
        None => format!("<td>{}</td>", text(bytes)),
    }
}

/// `GET /ui/projects/{ns}/events`: the project's progress events for the page's script,
/// signed in with the session cookie and checked as the API's event stream is.
pub async fn events(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match crate::web::events::progress(&state, &ns, session.token).await {
        Ok(stream) => stream.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET .../backups/{name}/download`.
pub async fn download(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match signed_in(&state, &headers).await {
        Ok(s) => s.caller,
        Err(r) => return r,
    };
    let see = Action::on("get", "clusterbackups");
    let download = see.subresource("download");
    if let Err(e) = require(&state, &caller, &ns, see, Some(download)).await {
        return error_page(e, None);
    }
    tracing::info!(user = %caller.user, namespace = %ns, cluster = %cluster, backup = %name, "download");
    tarball(
        &state,
        &ns,
        &cluster,
        &name,
        &LocationQuery { location: None },
    )
    .await
    .unwrap_or_else(|e| error_page(e, None))
}

/// `POST .../backups/{name}/delete`.
pub async fn delete(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let caller = match signed_in_form(&state, &headers, &form.csrf).await {
        Ok(s) => s.caller,
        Err(r) => return r,
    };
    let see = Action::on("get", "clusterbackups");
    let done = async {
        require(&state, &caller, &ns, see, None).await?;
        tracing::info!(user = %caller.user, namespace = %ns, cluster = %cluster, backup = %name, "delete");
        delete_stored(
            &state,
            &caller,
            &ns,
            &cluster,
            &name,
            &LocationQuery { location: None },
        )
        .await
    };
    match done.await {
        Ok(()) => Redirect::to(&format!("/ui/projects/{ns}/clusters/{cluster}")).into_response(),
        Err(e) => error_page(e, None),
    }
}

/// `POST /ui/projects/{ns}/clusterbackups/{name}/run`.
pub async fn run_now(
    State(state): State<WebState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let caller = match signed_in_form(&state, &headers, &form.csrf).await {
        Ok(s) => s.caller,
        Err(r) => return r,
    };
    let done = async {
        require(
            &state,
            &caller,
            &ns,
            Action::on("get", "clusterbackups").named(&name),
            Some(Action::on("patch", "clusterbackups").named(&name)),
        )
        .await?;
        request_run_now(&state, &caller, &ns, &name).await
    };
    match done.await {
        Ok(_) => Redirect::to(&format!("/ui/projects/{ns}")).into_response(),
        Err(e) => error_page(e, None),
    }
}
