//! The dashboard's web page, rendered on the server (no assets from anywhere: the style is
//! inline, there is no script beyond a delete confirmation). It signs in with a Kubernetes
//! token once, then works from the session cookie ([`super::session`]); every action is
//! checked with the project's RBAC exactly as the JSON API checks it, and every form carries
//! the session's CSRF token.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use serde::Deserialize;
use serde_json::{Value, json};

use super::WebState;
use super::auth::{Action, Caller, require, review};
use super::error::ApiError;
use super::handlers::{
    LocationQuery, cluster_backups_data, clusters_data, create_restore_object, delete_stored,
    locations_data, repository, request_run_now, stored_backups, tarball, visible_namespaces,
};
use super::session::{self, MAX_AGE_SECONDS};
use crate::api::ClusterRestore;

/// How long the page waits for a dry run's plan.
const PLAN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Escapes text for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}\
header{background:#1d2430;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center}\
header a{color:#fff}main{padding:1rem 1.5rem;max-width:72rem}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem}\
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e3e6ea}th{background:#eef0f3}\
.bad{color:#b42318;font-weight:600}.ok{color:#067647}.muted{color:#667085}\
button{font:inherit;padding:.25rem .7rem;border:1px solid #98a2b3;border-radius:4px;background:#fff;cursor:pointer}\
button:focus,a:focus,textarea:focus{outline:3px solid #84adff}\
.danger{border-color:#b42318;color:#b42318}form.inline{display:inline}\
textarea{width:100%;max-width:40rem;font-family:monospace}.error{background:#fef3f2;border:1px solid #fda29b;padding:.5rem 1rem}";

/// The page around `body`.
fn layout(title: &str, session: Option<(&str, &str)>, body: &str, refresh: bool) -> String {
    let signed_in = match session {
        Some((user, csrf)) => format!(
            "<span>{}</span><form class=\"inline\" method=\"post\" action=\"/ui/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
            esc(user),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">{}\
         <title>{} · backup-fleet</title><style>{STYLE}</style></head><body>\
         <header><a href=\"/ui/projects\"><strong>backup-fleet</strong></a>{signed_in}</header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"3\">"
        } else {
            ""
        },
        esc(title),
        esc(title)
    )
}

/// A page saying what went wrong, with the API's status.
fn error_page(error: ApiError, session: Option<(&str, &str)>) -> Response {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p>",
        esc(&error.message)
    );
    (error.status, Html(layout("Error", session, &body, false))).into_response()
}

/// The signed-in caller and their session cookie value, or the response to send instead.
async fn signed_in(state: &WebState, headers: &HeaderMap) -> Result<(Caller, String), Response> {
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::from_cookie_header)
        .map(str::to_string);
    let now = Timestamp::now().as_second();
    let Some((cookie, token)) =
        cookie.and_then(|c| state.session_key.open(&c, now).map(|t| (c, t)))
    else {
        return Err(Redirect::to("/ui").into_response());
    };
    match review(&state.client, &token).await {
        Ok(caller) => Ok((caller, cookie)),
        // Revoked or expired token: sign in again.
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(Redirect::to("/ui").into_response()),
        Err(e) => Err(error_page(e, None)),
    }
}

/// A form's CSRF field.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// The refusal of a form whose CSRF token is not the session's.
fn csrf_refused(state: &WebState, cookie: &str, sent: &str) -> Option<Response> {
    (!state.session_key.csrf_ok(cookie, sent)).then(|| {
        error_page(
            ApiError::forbidden(
                "this form is stale or was not sent by this page: reload and try again",
            ),
            None,
        )
    })
}

/// `GET /ui`: the sign-in form, or the projects when signed in.
pub async fn index(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(_) => Redirect::to("/ui/projects").into_response(),
        Err(_) => Html(login_page(None)).into_response(),
    }
}

fn login_page(problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(p)))
        .unwrap_or_default();
    layout(
        "Sign in",
        None,
        &format!(
            "{problem}<p>Sign in with a Kubernetes token of the management cluster (e.g. \
             <code>kubectl create token &lt;serviceaccount&gt; -n &lt;project&gt;</code>). \
             Your project's RBAC decides what you see and do.</p>\
             <form method=\"post\" action=\"/ui/login\"><label for=\"token\">Token</label><br>\
             <textarea id=\"token\" name=\"token\" rows=\"4\" autofocus required></textarea><br>\
             <button type=\"submit\">Sign in</button></form>"
        ),
        false,
    )
}

/// The sign-in form's field.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /ui/login`: checks the token (TokenReview) and starts the session.
pub async fn login(State(state): State<WebState>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    match review(&state.client, token).await {
        Ok(_) => {
            let expires = Timestamp::now().as_second() + MAX_AGE_SECONDS;
            let cookie = state.session_key.seal(token, expires);
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, session::set_cookie(&cookie)),
                    (header::LOCATION, "/ui/projects".to_string()),
                ],
            )
                .into_response()
        }
        Err(e) => (e.status, Html(login_page(Some(&e.message)))).into_response(),
    }
}

/// `POST /ui/logout`.
pub async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Ok((_, cookie)) = signed_in(&state, &headers).await
        && let Some(refused) = csrf_refused(&state, &cookie, &form.csrf)
    {
        return refused;
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::clear_cookie()),
            (header::LOCATION, "/ui".to_string()),
        ],
    )
        .into_response()
}

/// `GET /ui/projects`.
pub async fn projects(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = state.session_key.csrf(&cookie);
    let session = Some((caller.user.as_str(), csrf.as_str()));
    match visible_namespaces(&state, &caller).await {
        Ok(names) if names.is_empty() => Html(layout(
            "Projects",
            session,
            "<p>No project is visible to you: ask a project's owner for access.</p>",
            false,
        ))
        .into_response(),
        Ok(names) => {
            let items: String = names
                .iter()
                .map(|n| format!("<li><a href=\"/ui/projects/{0}\">{0}</a></li>", esc(n)))
                .collect();
            Html(layout(
                "Projects",
                session,
                &format!("<ul>{items}</ul>"),
                false,
            ))
            .into_response()
        }
        Err(e) => error_page(e, session),
    }
}

/// The time a backup name (`<schedule>-<YYYYMMDDhhmmss>`) was taken, when it says.
fn taken_at(name: &str) -> Option<Timestamp> {
    let stamp = name.get(name.len().checked_sub(14)?..)?;
    jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", stamp)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

fn age(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(since).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// Each cluster's newest successful backup and, when a schedule covers it, whether that is
/// older than twice the shortest schedule's interval.
fn freshness(cluster: &str, schedules: &[Value], now: Timestamp) -> (String, bool) {
    let mut newest: Option<(String, Timestamp)> = None;
    let mut interval: Option<i64> = None;
    for schedule in schedules {
        let Some(runs) = schedule["clusters"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["cluster"] == cluster))
        else {
            continue;
        };
        if let Some(seconds) = schedule["intervalSeconds"].as_i64().filter(|s| *s > 0) {
            interval = Some(interval.map_or(seconds, |i| i.min(seconds)));
        }
        if let Some(name) = runs["lastSuccessfulBackup"].as_str()
            && let Some(at) = taken_at(name)
            && newest.as_ref().is_none_or(|(_, t)| at > *t)
        {
            newest = Some((name.to_string(), at));
        }
    }
    match newest {
        None => ("none yet".into(), interval.is_some()),
        Some((name, at)) => {
            let stale = interval.is_some_and(|i| now.duration_since(at).as_secs() > 2 * i);
            (format!("{} ({} ago)", esc(&name), age(at, now)), stale)
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// `GET /ui/projects/{ns}`: clusters and their last good backup, locations, schedules.
pub async fn project(
    State(state): State<WebState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = state.session_key.csrf(&cookie);
    let session = Some((caller.user.as_str(), csrf.as_str()));
    let see = Action::on("list", "clusterbackups");
    if let Err(e) = require(&state.client, &caller, &ns, see, None).await {
        return error_page(e, session);
    }
    let data = async {
        Ok::<_, ApiError>((
            clusters_data(&state, &ns).await?,
            locations_data(&state, &ns).await?,
            cluster_backups_data(&state, &ns).await?,
        ))
    };
    let (clusters, locations, schedules) = match data.await {
        Ok(d) => d,
        Err(e) => return error_page(e, session),
    };
    let now = Timestamp::now();
    let e_ns = esc(&ns);
    let cluster_rows: String = clusters
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or_default();
            let (last, stale) = freshness(name, &schedules, now);
            format!(
                "<tr><td><a href=\"/ui/projects/{e_ns}/clusters/{0}\">{0}</a></td><td>{1}</td>\
                 <td class=\"{2}\">{last}</td></tr>",
                esc(name),
                text(&c["reachable"]["status"]),
                if stale { "bad" } else { "" }
            )
        })
        .collect();
    let location_rows: String = locations
        .iter()
        .map(|l| {
            let available = l["phase"] == "Available";
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                text(&l["name"]),
                text(&l["provider"]),
                if available { "ok" } else { "bad" },
                text(&l["phase"]),
                text(&l["message"])
            )
        })
        .collect();
    let schedule_rows: String = schedules
        .iter()
        .map(|b| {
            let name = b["name"].as_str().unwrap_or_default();
            let next: Vec<String> = b["nextRuns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            format!(
                "<tr><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>\
                 <form class=\"inline\" method=\"post\" action=\"/ui/projects/{e_ns}/clusterbackups/{0}/run\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{4}\"><button>Run now</button></form></td></tr>",
                esc(name),
                text(&b["schedule"]),
                text(&b["phase"]),
                if next.is_empty() { "—".into() } else { next.join("<br>") },
                esc(&csrf)
            )
        })
        .collect();
    let body = format!(
        "<p><a href=\"/ui/projects/{e_ns}/restores\">Restores</a></p>\
         <h2>Clusters</h2><table><thead><tr><th>Cluster</th><th>Reachable</th>\
         <th>Last successful backup</th></tr></thead><tbody>{cluster_rows}</tbody></table>\
         <h2>Storage locations</h2><table><thead><tr><th>Name</th><th>Provider</th><th>Phase</th>\
         <th>Message</th></tr></thead><tbody>{location_rows}</tbody></table>\
         <h2>Schedules</h2><table><thead><tr><th>Name</th><th>Schedule</th><th>Phase</th>\
         <th>Next three runs</th><th></th></tr></thead><tbody>{schedule_rows}</tbody></table>"
    );
    Html(layout(&format!("Project {ns}"), session, &body, false)).into_response()
}

/// `GET /ui/projects/{ns}/clusters/{cluster}`: the cluster's backups in storage.
pub async fn cluster(
    State(state): State<WebState>,
    Path((ns, cluster)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = state.session_key.csrf(&cookie);
    let session = Some((caller.user.as_str(), csrf.as_str()));
    let backups = async {
        require(
            &state.client,
            &caller,
            &ns,
            Action::on("list", "clusterbackups"),
            None,
        )
        .await?;
        let repo = repository(&state, &ns, &cluster, &LocationQuery { location: None }).await?;
        stored_backups(&repo).await
    };
    let backups = match backups.await {
        Ok(b) => b,
        Err(e) => return error_page(e, session),
    };
    let (e_ns, e_cluster, e_csrf) = (esc(&ns), esc(&cluster), esc(&csrf));
    let rows: String = backups
        .iter()
        .rev()
        .map(|b| {
            let name = esc(b["name"].as_str().unwrap_or_default());
            let base = format!("/ui/projects/{e_ns}/clusters/{e_cluster}/backups/{name}");
            let phase_class = if b["phase"] == "Completed" { "ok" } else { "bad" };
            format!(
                "<tr><td>{name}</td><td class=\"{phase_class}\">{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>\
                 <a href=\"{base}/download\">Download</a> \
                 <form class=\"inline\" method=\"post\" action=\"{base}/plan\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{e_csrf}\"><button>Restore…</button></form> \
                 <form class=\"inline\" method=\"post\" action=\"{base}/delete\" \
                 onsubmit=\"return confirm('Delete backup {name} from storage?')\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{e_csrf}\">\
                 <button class=\"danger\">Delete</button></form></td></tr>",
                text(&b["phase"]),
                text(&b["itemsBackedUp"]),
                text(&b["sizeBytes"]),
                text(&b["completed"]),
                text(&b["expiration"]),
            )
        })
        .collect();
    let body = if backups.is_empty() {
        "<p>No backups of this cluster in storage yet.</p>".to_string()
    } else {
        format!(
            "<table><thead><tr><th>Backup</th><th>Phase</th><th>Items</th><th>Bytes</th>\
             <th>Completed</th><th>Expires</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    Html(layout(
        &format!("Cluster {cluster} of {ns}"),
        session,
        &format!("<p><a href=\"/ui/projects/{e_ns}\">← {e_ns}</a></p>{body}"),
        false,
    ))
    .into_response()
}

/// `GET .../backups/{name}/download`.
pub async fn download(
    State(state): State<WebState>,
    Path((ns, cluster, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (caller, _) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let see = Action::on("get", "clusterbackups");
    let download = see.subresource("download");
    if let Err(e) = require(&state.client, &caller, &ns, see, Some(download)).await {
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
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refused(&state, &cookie, &form.csrf) {
        return refused;
    }
    let see = Action::on("get", "clusterbackups");
    let done = async {
        require(
            &state.client,
            &caller,
            &ns,
            see,
            Some(Action::on("delete", "clusterbackups")),
        )
        .await?;
        tracing::info!(user = %caller.user, namespace = %ns, cluster = %cluster, backup = %name, "delete");
        delete_stored(
            &state,
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
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refused(&state, &cookie, &form.csrf) {
        return refused;
    }
    let done = async {
        require(
            &state.client,
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
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refused(&state, &cookie, &form.csrf) {
        return refused;
    }
    let csrf = state.session_key.csrf(&cookie);
    let session = Some((caller.user.as_str(), csrf.as_str()));
    let dry = restore_name("plan");
    let planned = async {
        require(
            &state.client,
            &caller,
            &ns,
            Action::on("list", "clusterbackups"),
            Some(Action::on("create", "clusterrestores")),
        )
        .await?;
        let body = json!({"metadata": {"name": dry},
            "spec": {"source": {"cluster": cluster, "backupName": name}, "dryRun": true}});
        create_restore_object(&state, &caller, &ns, &body).await?;
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
        esc(&csrf)
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
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(refused) = csrf_refused(&state, &cookie, &form.csrf) {
        return refused;
    }
    let created = async {
        require(
            &state.client,
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
        if let Some(ready) = crate::api::status::find(&status.conditions, crate::api::status::READY)
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
    let (caller, cookie) = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = state.session_key.csrf(&cookie);
    let session = Some((caller.user.as_str(), csrf.as_str()));
    if let Err(e) = require(
        &state.client,
        &caller,
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
    let mut running = false;
    let rows: String = listed
        .items
        .iter()
        .map(|r| {
            let status = serde_json::to_value(&r.status).unwrap_or(Value::Null);
            let phase = status["phase"].clone();
            running |= phase == "InProgress" || phase == "New";
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
                text(&phase),
                if r.spec.dry_run { "dry run" } else { "" },
                clusters.join("<br>")
            )
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_cluster_is_red_when_its_last_good_backup_is_older_than_two_intervals() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let schedules = |last: &str| {
            vec![json!({"intervalSeconds": 3600,
                "clusters": [{"cluster": "c1", "lastSuccessfulBackup": last}]})]
        };
        let (shown, stale) = freshness("c1", &schedules("nightly-20261130110000"), now);
        assert!(!stale && shown.contains("60 min ago"), "{shown}");
        let (_, stale) = freshness("c1", &schedules("nightly-20261130090000"), now);
        assert!(stale, "three hours against a one-hour schedule");
        let (shown, stale) = freshness("c9", &schedules("nightly-20261130110000"), now);
        assert_eq!((shown.as_str(), stale), ("none yet", false));
    }
}
