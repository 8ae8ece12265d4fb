use super::*;
use crate::selector::LabelSelector;

fn gr(s: &str) -> GroupResource {
    GroupResource::parse(s)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn item(res: &str, ns: Option<&str>, labels: &[(&str, &str)]) -> ItemRef {
    ItemRef {
        group_resource: gr(res),
        namespace: ns.map(str::to_string),
        name: "x".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn group_resource_forms() {
    assert_eq!(
        gr("deployments.apps"),
        GroupResource::new("apps", "deployments")
    );
    assert_eq!(gr("configmaps"), GroupResource::new("", "configmaps"));
    assert_eq!(
        gr("volumesnapshots.snapshot.storage.k8s.io").group,
        "snapshot.storage.k8s.io"
    );
    assert_eq!(gr("Deployments.Apps").to_string(), "deployments.apps");
    assert_eq!(gr("configmaps").to_string(), "configmaps");
}

#[test]
fn globs() {
    assert!(glob_match("kube-*", "kube-system"));
    assert!(!glob_match("kube-*", "default"));
    assert!(glob_match("*", ""));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxbyy"));
    assert!(glob_match("ns-?", "ns-1"));
    assert!(!glob_match("ns-?", "ns-10"));
}

#[test]
fn namespaces() {
    let f = ResourceFilter {
        included_namespaces: strings(&["kube-*", "app"]),
        excluded_namespaces: strings(&["kube-public"]),
        ..Default::default()
    };
    assert!(f.matches_namespace("kube-system"));
    assert!(f.matches_namespace("app"));
    assert!(!f.matches_namespace("kube-public"));
    assert!(!f.matches_namespace("other"));
    assert!(!f.all_namespaces());
    let all = ResourceFilter {
        included_namespaces: strings(&["*"]),
        ..Default::default()
    };
    assert!(all.matches_namespace("anything"));
    assert!(all.all_namespaces());
    assert!(ResourceFilter::default().matches_namespace("x"));
}

#[test]
fn resources_in_velero_forms() {
    let f = ResourceFilter {
        included_resources: strings(&[
            "deployments",
            "configmaps",
            "statefulsets.v1.apps",
            "jobs.batch",
        ]),
        ..Default::default()
    };
    assert!(f.matches_resource(&gr("deployments.apps")));
    assert!(f.matches_resource(&gr("configmaps")));
    assert!(f.matches_resource(&gr("statefulsets.apps")));
    assert!(f.matches_resource(&gr("jobs.batch")));
    assert!(!f.matches_resource(&gr("secrets")));
    assert!(!f.matches_resource(&gr("jobs.other.io")));
    let ex = ResourceFilter {
        excluded_resources: strings(&["secrets", "events.events.k8s.io", "pods.v1"]),
        ..Default::default()
    };
    assert!(!ex.matches_resource(&gr("secrets")));
    assert!(!ex.matches_resource(&gr("events.events.k8s.io")));
    assert!(!ex.matches_resource(&gr("pods")));
    assert!(ex.matches_resource(&gr("configmaps")));
    assert!(ex.matches_resource(&gr("events")));
}

#[test]
fn exclude_wins() {
    let f = ResourceFilter {
        included_resources: strings(&["*"]),
        excluded_resources: strings(&["secrets"]),
        ..Default::default()
    };
    assert!(!f.matches_resource(&gr("secrets")));
    assert!(f.matches_resource(&gr("pods")));
}

#[test]
fn cluster_resources_auto_true_false() {
    let pv = item("persistentvolumes", None, &[]);
    let all = ResourceFilter::default();
    assert!(all.matches(&pv));
    let ns_only = ResourceFilter {
        included_namespaces: strings(&["app"]),
        ..Default::default()
    };
    assert!(
        !ns_only.matches(&pv),
        "auto excludes cluster resources when namespaces are filtered"
    );
    let forced = ResourceFilter {
        include_cluster_resources: Some(true),
        ..ns_only.clone()
    };
    assert!(forced.matches(&pv));
    let off = ResourceFilter {
        include_cluster_resources: Some(false),
        ..Default::default()
    };
    assert!(!off.matches(&pv));
    assert!(off.matches(&item("pods", Some("a"), &[])));
}

#[test]
fn new_style_cluster_scoped() {
    let f = ResourceFilter {
        included_namespaces: strings(&["app"]),
        included_cluster_scoped_resources: strings(&["storageclasses.storage.k8s.io"]),
        ..Default::default()
    };
    f.validate().unwrap();
    assert!(f.matches(&item("storageclasses.storage.k8s.io", None, &[])));
    assert!(!f.matches(&item("persistentvolumes", None, &[])));
    let ex = ResourceFilter {
        excluded_cluster_scoped_resources: strings(&["nodes"]),
        ..Default::default()
    };
    assert!(!ex.matches(&item("nodes", None, &[])));
    assert!(ex.matches(&item("persistentvolumes", None, &[])));
    let mixed = ResourceFilter {
        include_cluster_resources: Some(true),
        excluded_cluster_scoped_resources: strings(&["nodes"]),
        ..Default::default()
    };
    assert_eq!(mixed.validate(), Err(FilterError::MixedStyles));
}

#[test]
fn labels_and_or_labels() {
    let f = ResourceFilter {
        or_label_selectors: vec![
            LabelSelector::parse("app=a").unwrap(),
            LabelSelector::parse("app=b").unwrap(),
        ],
        ..Default::default()
    };
    assert!(f.matches(&item("pods", Some("ns"), &[("app", "a")])));
    assert!(f.matches(&item("pods", Some("ns"), &[("app", "b")])));
    assert!(!f.matches(&item("pods", Some("ns"), &[("app", "c")])));
    let g = ResourceFilter {
        label_selector: Some(LabelSelector::parse("app=a,tier").unwrap()),
        ..Default::default()
    };
    assert!(!g.matches(&item("pods", Some("ns"), &[("app", "a")])));
    assert!(g.matches(&item("pods", Some("ns"), &[("app", "a"), ("tier", "x")])));
    assert!(ResourceFilter::default().matches_labels(&BTreeMap::new()));
}

#[test]
fn both_selectors_is_an_error() {
    let f = ResourceFilter {
        label_selector: Some(LabelSelector::parse("app=web").unwrap()),
        or_label_selectors: vec![LabelSelector::parse("tier=db").unwrap()],
        ..Default::default()
    };
    let e = f.validate().unwrap_err();
    assert!(matches!(e, FilterError::BothSelectors { or_count: 1, .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("labelSelector") && msg.contains("orLabelSelectors"),
        "{msg}"
    );
    assert!(
        msg.contains("web"),
        "message should show the selector value: {msg}"
    );
}

#[test]
fn list_validation() {
    let f = ResourceFilter {
        excluded_namespaces: strings(&["*"]),
        ..Default::default()
    };
    assert_eq!(
        f.validate(),
        Err(FilterError::ExcludeAll {
            list: "excludedNamespaces"
        })
    );
    let f = ResourceFilter {
        included_resources: strings(&["secrets"]),
        excluded_resources: strings(&["secrets"]),
        ..Default::default()
    };
    let e = f.validate().unwrap_err();
    assert!(matches!(&e, FilterError::Conflict { value, .. } if value == "secrets"));
    assert!(e.to_string().contains("secrets"));
    let f = ResourceFilter {
        included_namespaces: strings(&["bad ns"]),
        ..Default::default()
    };
    let e = f.validate().unwrap_err();
    assert!(e.to_string().contains("bad ns"));
    ResourceFilter::default().validate().unwrap();
}

#[test]
fn serde_uses_velero_names() {
    let f: ResourceFilter = serde_json::from_str(
        r#"{"includedNamespaces":["a"],"includeClusterResources":false,"orLabelSelectors":[{"matchLabels":{"x":"y"}}]}"#,
    )
    .unwrap();
    assert_eq!(f.included_namespaces, vec!["a"]);
    assert_eq!(f.include_cluster_resources, Some(false));
    assert_eq!(f.or_label_selectors.len(), 1);
}
