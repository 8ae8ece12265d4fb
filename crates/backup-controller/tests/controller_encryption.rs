//! Encryption at rest through the controller: a StorageLocation with age recipients makes
//! every run it stores unreadable without the key, its identity Secret lets a ClusterRestore
//! read them back, and a location without the identity refuses the restore up front.

use std::time::Duration;

use anyhow::{Context, Result};
use backup_core::BackupKind;
use backup_storage::{BackupName, Identities};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use tests::controller::{ControllerProcess, Project, condition, has_condition};
use tests::env::shared;
use tests::namespace::{TestNamespace, unique_name};

#[tokio::test]
async fn an_encrypting_location_stores_only_ciphertext_and_restores_with_its_identity() -> Result<()>
{
    let env = shared()?;
    let c1 = env.client("c1").await?;
    let c2 = env.client("c2").await?;
    let p = Project::create("encryption").await?;
    let data = TestNamespace::create(&c1, "encryption-src").await?;
    Api::<ConfigMap>::namespaced(c1.clone(), &data.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "secret-sauce"}, "data": {"recipe": "42"}}),
            )?,
        )
        .await?;
    let key = Identities::generate();
    let recipient = key.recipients()[0].to_string();
    p.secret("age-key", "identity", key.to_identity_file().as_bytes())
        .await?;

    let mut sealed = p.s3_location("sealed", true)?;
    sealed["spec"]["encryption"] = json!({
        "recipients": [recipient],
        "identitySecret": {"name": "age-key", "key": "identity"}
    });
    p.apply(sealed.clone()).await?;
    // The same storage without the identity: it can write, not read.
    let mut write_only = p.s3_location("write-only", false)?;
    write_only["spec"]["encryption"] = json!({"recipients": [recipient]});
    p.apply(write_only).await?;
    let mut broken = p.s3_location("broken", false)?;
    broken["spec"]["encryption"] = json!({"recipients": ["age1notakey"]});
    p.apply(broken).await?;
    p.apply(p.cluster("c1", "c1", json!({}))).await?;
    p.apply(p.cluster("c2", "c2", json!({}))).await?;
    p.apply(json!({
        "kind": "ClusterBackup",
        "metadata": {"name": "sealed"},
        "spec": {"clusters": {"names": ["c1"]}, "template": {"includedNamespaces": [data.name]}}
    }))
    .await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    p.wait_for(
        "ClusterBackup",
        "sealed",
        Duration::from_secs(60),
        "the encrypted run completed",
        |b| b["status"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;
    // In storage: every artifact encrypted to the location's recipient; unreadable without it.
    let repo = p.repository("c1")?;
    let name = BackupName::new("sealed")?;
    let manifest = repo.get_manifest(BackupKind::Resources, &name).await?;
    assert!(!manifest.artifacts.is_empty());
    for artifact in &manifest.artifacts {
        let encryption = artifact
            .encryption
            .as_ref()
            .with_context(|| format!("{} is stored in plain text", artifact.name.as_str()))?;
        assert_eq!(encryption.recipients, vec![key.fingerprints()[0].clone()]);
    }
    assert!(repo.ensure_readable(&manifest).is_err(), "no key, no read");
    repo.verify(BackupKind::Resources, &name).await?;

    // Restored with the location's identity.
    let mapped = unique_name("opened", "encryption");
    p.apply(json!({
        "kind": "ClusterRestore",
        "metadata": {"name": "open"},
        "spec": {
            "source": {"cluster": "c1", "clusterBackup": "sealed"},
            "targetClusters": ["c2"],
            "namespaceMapping": {data.name.clone(): mapped.clone()}
        }
    }))
    .await?;
    p.wait_for(
        "ClusterRestore",
        "open",
        Duration::from_secs(60),
        "the restore of the encrypted backup completed",
        |r| r["status"]["phase"] == "Completed",
    )
    .await
    .with_context(|| controller.log_text())?;
    let restored = Api::<ConfigMap>::namespaced(c2.clone(), &mapped)
        .get("secret-sauce")
        .await?;
    assert_eq!(
        restored
            .data
            .unwrap_or_default()
            .get("recipe")
            .map(String::as_str),
        Some("42")
    );

    // Without the identity the restore is refused before anything is created.
    p.apply(json!({
        "kind": "ClusterRestore",
        "metadata": {"name": "no-key"},
        "spec": {
            "source": {"cluster": "c1", "backupName": "sealed", "storageLocation": "write-only"},
            "targetClusters": ["c2"],
            "namespaceMapping": {data.name.clone(): unique_name("never", "encryption")}
        }
    }))
    .await?;
    let refused = p
        .wait_for(
            "ClusterRestore",
            "no-key",
            Duration::from_secs(30),
            "Ready=False BackupEncrypted",
            |r| has_condition(r, "Ready", "False", "BackupEncrypted"),
        )
        .await
        .with_context(|| controller.log_text())?;
    let message = condition(&refused, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(key.fingerprints()[0].as_str()),
        "names the key needed: {message}"
    );

    // A recipient that is not an age key makes the location say which field to fix.
    let broken = p
        .wait_for(
            "StorageLocation",
            "broken",
            Duration::from_secs(30),
            "the bad recipient reported",
            |l| {
                l["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("spec.encryption.recipients"))
            },
        )
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(broken["status"]["phase"], "Unavailable", "{broken:#}");
    // The key never shows up in status or events.
    let events = p.events_json().await?;
    let secret_key = key.to_identity_file();
    let secret_line = secret_key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .context("an identity line")?;
    assert!(!events.contains(secret_line));
    assert!(!serde_json::to_string(&refused)?.contains(secret_line));

    Api::<Namespace>::all(c2.clone())
        .delete(&mapped, &DeleteParams::default())
        .await?;
    data.delete().await?;
    p.delete().await
}
