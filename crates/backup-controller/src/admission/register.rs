//! The ValidatingWebhookConfiguration that sends our kinds to the webhook, kept by a controller
//! run outside a chart (`--webhook-register URL`); the chart writes its own.

use anyhow::{Context as _, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::context::FIELD_MANAGER;
use backup_api::GROUP;

/// The path the webhook answers on.
pub const PATH: &str = "/validate";

/// The kinds judged at admission, as resources.
pub const RESOURCES: [&str; 6] = [
    "clusterrestores",
    "clustermigrations",
    "clusterbackups",
    "etcdbackupconfigs",
    "etcdrestores",
    "restoredrills",
];

/// The label every namespace carries with its own name (set by the API server since
/// Kubernetes 1.21).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The configuration's name: one per scope, so controllers of different projects (each with
/// `--namespace`) do not overwrite each other's.
pub fn name(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("backup-fleet-{ns}"),
        None => "backup-fleet".to_string(),
    }
}

/// The configuration sending creates and updates of our kinds in `namespace` (all namespaces
/// when `None`) to `url` + [`PATH`], trusted by `ca_pem`. A request the webhook cannot answer
/// is refused (`failurePolicy: Fail`): nothing is admitted unchecked.
pub fn configuration(
    url: &str,
    ca_pem: &str,
    namespace: Option<&str>,
) -> ValidatingWebhookConfiguration {
    let webhook = ValidatingWebhook {
        name: format!("permissions.{GROUP}"),
        client_config: WebhookClientConfig {
            url: Some(format!("{}{PATH}", url.trim_end_matches('/'))),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        },
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec![GROUP.into()]),
            api_versions: Some(vec!["v1alpha1".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(RESOURCES.map(String::from).to_vec()),
            scope: Some("Namespaced".into()),
        }]),
        namespace_selector: namespace.map(|ns| LabelSelector {
            match_labels: Some([(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())].into()),
            ..LabelSelector::default()
        }),
        failure_policy: Some("Fail".into()),
        side_effects: "None".into(),
        admission_review_versions: vec!["v1".into()],
        timeout_seconds: Some(10),
        ..ValidatingWebhook::default()
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name(namespace)),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![webhook]),
    }
}

/// Writes the configuration (server-side apply: the URL and CA of this start replace the last).
pub async fn register(
    client: &kube::Client,
    url: &str,
    ca_pem: &str,
    namespace: Option<&str>,
) -> Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut configuration = configuration(url, ca_pem, namespace);
    configuration.metadata.managed_fields = None;
    let body = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": configuration.metadata,
        "webhooks": configuration.webhooks,
    });
    let name = name(namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .with_context(|| {
        format!(
            "registering the ValidatingWebhookConfiguration {name} (the controller needs \
                 `patch` on validatingwebhookconfigurations.admissionregistration.k8s.io)"
        )
    })?;
    tracing::info!(%name, url, "admission webhook registered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_scoped_configuration_judges_only_that_project_and_fails_closed() {
        let c = configuration("https://127.0.0.1:9443/", "PEM", Some("team-a"));
        assert_eq!(c.metadata.name.as_deref(), Some("backup-fleet-team-a"));
        let webhook = &c.webhooks.as_ref().unwrap()[0];
        assert_eq!(
            webhook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate")
        );
        assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
        let selector = webhook.namespace_selector.as_ref().unwrap();
        assert_eq!(
            selector.match_labels.as_ref().unwrap()[NAMESPACE_NAME_LABEL],
            "team-a"
        );
        let rules = &webhook.rules.as_ref().unwrap()[0];
        assert_eq!(rules.resources.as_ref().unwrap().len(), RESOURCES.len());
        assert!(
            configuration("https://x", "PEM", None).webhooks.unwrap()[0]
                .namespace_selector
                .is_none()
        );
    }
}
