//! The project overview: each cluster's last good backup and its age, the locations, the
//! schedules with their next runs.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use serde_json::Value;

use super::{error_page, esc, layout, signed_in};
use crate::web::WebState;
use crate::web::auth::{Action, allowed, require};
use crate::web::error::ApiError;
use crate::web::handlers::{cluster_backups_data, clusters_data, drills_data, locations_data};

/// The time a backup name (`<schedule>-<YYYYMMDDhhmmss>`) was taken, when it says.
fn taken_at(name: &str) -> Option<Timestamp> {
    let stamp = name.get(name.len().checked_sub(14)?..)?;
    jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", stamp)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

pub(super) fn age(since: Timestamp, now: Timestamp) -> String {
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
        // When it finished, if it is the last run; else the time in its name (a one-time
        // backup's name has none, but it is its own last run).
        let Some(name) = runs["lastSuccessfulBackup"].as_str() else {
            continue;
        };
        let finished = (runs["lastBackup"]["name"] == name)
            .then(|| runs["lastBackup"]["completionTimestamp"].as_str())
            .flatten()
            .and_then(|t| t.parse::<Timestamp>().ok());
        if let Some(at) = finished.or_else(|| taken_at(name))
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

/// A timestamp as people read it (`2026-11-30 10:43 UTC`); other values as [`text`].
pub(super) fn when(value: &Value) -> String {
    match value.as_str().and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(at) => at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        None => text(value),
    }
}

pub(super) fn text(value: &Value) -> String {
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
    let signed = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (caller, csrf, session) = (&signed.caller, &signed.csrf, signed.shown());
    let see = Action::on("list", "clusterbackups");
    if let Err(e) = require(&state, caller, &ns, see, None).await {
        return error_page(e, session);
    }
    // Each kind is shown only to who may list it.
    let data = async {
        let may = |resource| allowed(&state, caller, &ns, Action::on("list", resource));
        let clusters = match may("managedclusters").await? {
            true => Some(clusters_data(&state, &ns).await?),
            false => None,
        };
        let locations = match may("storagelocations").await? {
            true => Some(locations_data(&state, &ns).await?),
            false => None,
        };
        let drills = match may("restoredrills").await? {
            true => Some(drills_data(&state, &ns).await?),
            false => None,
        };
        Ok::<_, ApiError>((
            clusters,
            locations,
            cluster_backups_data(&state, &ns).await?,
            drills,
        ))
    };
    let (clusters, locations, schedules, drills) = match data.await {
        Ok(d) => d,
        Err(e) => return error_page(e, session),
    };
    let e_ns = esc(&ns);
    let hidden = |what: &str, columns: usize| {
        format!(
            "<tr><td colspan=\"{columns}\" class=\"muted\">You may not list {what} in this \
             project.</td></tr>"
        )
    };
    let columns = if drills.is_some() { 4 } else { 3 };
    let cluster_rows = match &clusters {
        Some(clusters) => cluster_rows(
            clusters,
            &schedules,
            drills.as_deref(),
            &ns,
            Timestamp::now(),
        ),
        None => hidden("ManagedClusters", columns),
    };
    let proven_header = match drills {
        Some(_) => "<th>Proven restorable</th>",
        None => "",
    };
    let location_rows = match &locations {
        Some(locations) => location_rows(locations),
        None => hidden("StorageLocations", 4),
    };
    let schedule_rows = schedule_rows(&schedules, &ns, csrf);
    let body = format!(
        "<p><a href=\"/ui/projects/{e_ns}/restores\">Restores</a></p>\
         <h2>Clusters</h2><table><thead><tr><th>Cluster</th><th>Reachable</th>\
         <th>Last successful backup</th>{proven_header}</tr></thead><tbody>{cluster_rows}</tbody></table>\
         <h2>Storage locations</h2><table><thead><tr><th>Name</th><th>Provider</th><th>Phase</th>\
         <th>Message</th></tr></thead><tbody>{location_rows}</tbody></table>\
         <h2>Schedules</h2><table><thead><tr><th>Name</th><th>Schedule</th><th>Phase</th>\
         <th>Next three runs</th><th></th></tr></thead><tbody>{schedule_rows}</tbody></table>"
    );
    Html(layout(&format!("Project {ns}"), session, &body, false)).into_response()
}

/// A row per cluster: its link, whether it is reachable, its last successful backup (marked
/// when stale) and, for who may list drills, when a drill last proved it restorable.
fn cluster_rows(
    clusters: &[Value],
    schedules: &[Value],
    drills: Option<&[Value]>,
    ns: &str,
    now: Timestamp,
) -> String {
    let e_ns = esc(ns);
    let mark = |stale: bool| if stale { "bad" } else { "" };
    clusters
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or_default();
            let (last, stale) = freshness(name, schedules, now);
            let proven = match drills {
                Some(drills) => {
                    let (proof, stale) = super::drills::proven(name, drills, now);
                    format!("<td class=\"{}\" data-proven>{proof}</td>", mark(stale))
                }
                None => String::new(),
            };
            format!(
                "<tr><td><a href=\"/ui/projects/{e_ns}/clusters/{0}\">{0}</a></td><td>{1}</td>\
                 <td class=\"{2}\">{last}</td>{proven}</tr>",
                esc(name),
                text(&c["reachable"]["status"]),
                mark(stale)
            )
        })
        .collect()
}

/// A row per StorageLocation: its provider and phase, and why when it is not available.
fn location_rows(locations: &[Value]) -> String {
    locations
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
        .collect()
}

/// A row per ClusterBackup: its schedule, phase, next runs (or why the schedule is wrong), and
/// a run-now button.
fn schedule_rows(schedules: &[Value], ns: &str, csrf: &str) -> String {
    let (e_ns, e_csrf) = (esc(ns), esc(csrf));
    schedules
        .iter()
        .map(|b| {
            let name = b["name"].as_str().unwrap_or_default();
            let next: Vec<String> = b["nextRuns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(when)
                .collect();
            format!(
                "<tr><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>\
                 <form class=\"inline\" method=\"post\" action=\"/ui/projects/{e_ns}/clusterbackups/{0}/run\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{e_csrf}\"><button>Run now</button></form></td></tr>",
                esc(name),
                text(&b["schedule"]),
                text(&b["phase"]),
                match (b["scheduleError"].as_str(), next.is_empty()) {
                    (Some(error), _) => format!("<span class=\"bad\">{}</span>", esc(error)),
                    (None, true) => "—".into(),
                    (None, false) => next.join("<br>"),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
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
        // A one-time backup: its name has no time, its last run's completion says when.
        let once = vec![json!({"intervalSeconds": 0, "clusters": [{"cluster": "c1",
            "lastSuccessfulBackup": "once",
            "lastBackup": {"name": "once", "completionTimestamp": "2026-11-30T11:58:00Z"}}]})];
        let (shown, stale) = freshness("c1", &once, now);
        assert!(!stale && shown.contains("once (2 min ago)"), "{shown}");
    }
}
