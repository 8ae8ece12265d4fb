//! What the pages show of RestoreDrills: on the overview, each cluster's newest proof that its
//! backup restores, with its age, marked when older than twice the interval of the drills that
//! cover the cluster (or when drills cover it and none proved it yet); on a cluster's page,
//! the drills of that cluster.

use jiff::Timestamp;
use serde_json::Value;

use super::esc;
use super::overview::{age, text, when};

/// The drills (as the API shows them) that select `cluster`.
fn covering<'d>(drills: &'d [Value], cluster: &str) -> impl Iterator<Item = &'d Value> {
    drills.iter().filter(move |d| {
        d["selectedClusters"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == cluster))
    })
}

/// `cluster`'s entry in a drill's status.
fn entry<'d>(drill: &'d Value, cluster: &str) -> &'d Value {
    drill["clusters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == cluster))
        .unwrap_or(&Value::Null)
}

/// The overview's cell for `cluster`: its newest proof with its age, and whether to mark it.
pub(super) fn proven(cluster: &str, drills: &[Value], now: Timestamp) -> (String, bool) {
    let mut newest: Option<(String, Timestamp)> = None;
    let mut interval: Option<i64> = None;
    let mut covered = false;
    for drill in covering(drills, cluster) {
        covered = true;
        if let Some(seconds) = drill["intervalSeconds"].as_i64().filter(|s| *s > 0) {
            interval = Some(interval.map_or(seconds, |i| i.min(seconds)));
        }
        let proof = &entry(drill, cluster)["lastProvenRestorable"];
        let at = proof["time"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok());
        if let (Some(name), Some(at)) = (proof["backupName"].as_str(), at)
            && newest.as_ref().is_none_or(|(_, t)| at > *t)
        {
            newest = Some((name.to_string(), at));
        }
    }
    match newest {
        None if covered => ("not yet".into(), true),
        None => ("no drill".into(), false),
        Some((name, at)) => {
            let stale = interval.is_some_and(|i| now.duration_since(at).as_secs() > 2 * i);
            (format!("{} ({} ago)", esc(&name), age(at, now)), stale)
        }
    }
}

/// The cluster page's table of the drills that select `cluster` (empty when none does).
pub(super) fn table(drills: &[Value], cluster: &str) -> String {
    let rows: String = covering(drills, cluster)
        .map(|drill| {
            let entry = entry(drill, cluster);
            let last = &entry["lastDrill"];
            let phase = last["phase"].as_str().unwrap_or("—");
            let class = match phase {
                "Verified" => "ok",
                "Mismatched" | "Failed" => "bad",
                _ => "",
            };
            let mut outcome = format!(
                "{} of {} verified",
                last["verified"].as_u64().unwrap_or(0),
                last["items"].as_u64().unwrap_or(0)
            );
            for problem in [&last["message"], &last["mismatches"][0]] {
                if let Some(problem) = problem.as_str().filter(|p| !p.is_empty()) {
                    outcome.push_str(&format!(
                        "<br><span class=\"muted\">{}</span>",
                        esc(problem)
                    ));
                }
            }
            let recovery = match last["recoverySeconds"].as_f64() {
                Some(seconds) => format!("{seconds:.1} s"),
                None => "—".into(),
            };
            format!(
                "<tr data-drill=\"{name}\"><td>{name}</td><td>{}</td><td class=\"{class}\">{}</td>\
                 <td>{}</td><td>{outcome}</td><td>{recovery}</td><td>{}</td></tr>",
                text(&drill["schedule"]),
                esc(phase),
                text(&last["backupName"]),
                when(&entry["lastProvenRestorable"]["time"]),
                name = text(&drill["name"]),
            )
        })
        .collect();
    if rows.is_empty() {
        return "<p class=\"muted\">No RestoreDrill selects this cluster.</p>".into();
    }
    format!(
        "<table><thead><tr><th>Drill</th><th>Schedule</th><th>Last drill</th><th>Backup</th>\
         <th>Outcome</th><th>Recovery</th><th>Proven restorable</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drill(interval: i64, clusters: Value) -> Value {
        json!({"name": "nightly", "schedule": "0 6 * * *", "intervalSeconds": interval,
            "selectedClusters": ["c1", "c2"], "clusters": clusters})
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_newest_proof_shows_its_age_and_is_marked_when_older_than_two_intervals() {
        let drills = [drill(
            86_400,
            json!([{"name": "c1", "lastProvenRestorable":
                {"backupName": "shop-20261207060000", "time": "2026-12-07T06:05:00Z"}}]),
        )];
        let fresh = proven("c1", &drills, at("2026-12-07T18:05:00Z"));
        assert_eq!(fresh, ("shop-20261207060000 (12 h ago)".into(), false));
        let (_, stale) = proven("c1", &drills, at("2026-12-09T06:06:00Z"));
        assert!(stale, "more than two days after a daily drill");
        assert_eq!(
            proven("c2", &drills, at("2026-12-07T18:05:00Z")),
            ("not yet".into(), true),
            "covered but never proven"
        );
        assert_eq!(
            proven("c3", &drills, at("2026-12-07T18:05:00Z")),
            ("no drill".into(), false)
        );
    }

    #[test]
    fn a_one_time_drill_never_goes_stale_and_the_cluster_page_names_a_mismatch() {
        let drills = [drill(
            0,
            json!([{"name": "c1", "lastDrill": {"phase": "Mismatched", "backupName": "b<1>",
                "items": 7, "verified": 6, "recoverySeconds": 1.25,
                "mismatches": ["configmaps shop/a: /data/x: the backup holds \"1\""]},
              "lastProvenRestorable": {"backupName": "b0", "time": "2026-01-01T00:00:00Z"}}]),
        )];
        let (_, stale) = proven("c1", &drills, at("2026-12-07T18:05:00Z"));
        assert!(!stale);
        let table = table(&drills, "c1");
        assert!(
            table.contains("<td class=\"bad\">Mismatched</td>"),
            "{table}"
        );
        assert!(table.contains("b&lt;1&gt;"), "escaped: {table}");
        assert!(table.contains("6 of 7 verified"), "{table}");
        assert!(
            table.contains("/data/x: the backup holds &quot;1&quot;"),
            "{table}"
        );
        assert!(
            table.contains("1.2 s") || table.contains("1.3 s"),
            "{table}"
        );
        assert!(table.contains("2026-01-01 00:00 UTC"), "{table}");
        assert!(super::table(&drills, "c3").contains("No RestoreDrill selects"));
    }
}
