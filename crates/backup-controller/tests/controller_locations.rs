//! StorageLocations on a real controller process against the real S3 server: the probe's
//! reasons for wrong credentials and a missing bucket, a location that breaks and recovers
//! when its credential Secret changes (without waiting for the next validation), and the
//! availability metric.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tests::controller::{
    ControllerProcess, Project, S3_SECRET, condition, has_condition, metric_value,
};
use tests::{shared, unique_name};

const WAIT: Duration = Duration::from_secs(60);

/// The S3 credentials file for `key_id` and `secret`, in Velero's format.
fn credentials(key_id: &str, secret: &str) -> Vec<u8> {
    format!("[default]\naws_access_key_id={key_id}\naws_secret_access_key={secret}\n").into_bytes()
}

/// The valid S3 credentials file.
fn good_credentials() -> Result<Vec<u8>> {
    let s3 = shared()?.s3();
    Ok(credentials(&s3.access_key_id, &s3.secret_access_key))
}

/// Waits until location `name` has `phase` with `reason`; returns it.
async fn location_is(p: &Project, name: &str, phase: &str, reason: &str) -> Result<Value> {
    p.wait_for(
        "StorageLocation",
        name,
        WAIT,
        &format!("phase {phase}, reason {reason}"),
        |l| l["status"]["phase"] == phase && l["status"]["reason"] == reason,
    )
    .await
}

/// The `backupfleet_storage_location_available` sample of location `name`.
fn available_metric(controller: &ControllerProcess, p: &Project, name: &str) -> Option<f64> {
    let (_, text) = controller.get("/metrics").ok()?;
    metric_value(
        &text,
        &format!(
            "backupfleet_storage_location_available{{namespace=\"{}\",name=\"{name}\"}}",
            p.name()
        ),
    )
}

#[tokio::test]
async fn wrong_credentials_and_a_missing_bucket_make_a_location_unavailable_with_the_reason()
-> Result<()> {
    let p = Project::create("location_faults").await?;
    let s3 = shared()?.s3();
    p.apply(p.s3_location("main", true)?).await?;

    p.secret(
        "wrong-creds",
        "cloud",
        &credentials(&s3.access_key_id, "not-the-secret"),
    )
    .await?;
    let mut wrong = p.s3_location("wrong-secret", false)?;
    wrong["spec"]["credential"]["name"] = json!("wrong-creds");
    p.apply(wrong).await?;

    p.secret(
        "unknown-key",
        "cloud",
        &credentials("nobody", "not-the-secret"),
    )
    .await?;
    let mut unknown = p.s3_location("unknown-key", false)?;
    unknown["spec"]["credential"]["name"] = json!("unknown-key");
    p.apply(unknown).await?;

    let missing_bucket = unique_name("no-such-bucket", "x");
    let mut no_bucket = p.s3_location("no-bucket", false)?;
    no_bucket["spec"]["objectStorage"]["bucket"] = json!(missing_bucket);
    p.apply(no_bucket).await?;

    let mut no_secret = p.s3_location("no-secret", false)?;
    no_secret["spec"]["credential"]["name"] = json!("never-created");
    p.apply(no_secret).await?;

    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    location_is(&p, "main", "Available", "Available")
        .await
        .with_context(|| controller.log_text())?;
    for name in ["wrong-secret", "unknown-key"] {
        let l = location_is(&p, name, "Unavailable", "AccessDenied").await?;
        let message = l["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message
                .starts_with("access denied: check the access key, secret and the bucket policy"),
            "{name}: {message}"
        );
        // The spec is fine; the probe failed.
        assert!(has_condition(&l, "Ready", "True", "SpecValid"), "{l:#}");
        assert!(
            has_condition(&l, "Available", "False", "AccessDenied"),
            "{l:#}"
        );
        assert!(l["status"]["lastValidationTime"].is_string());
    }
    let l = location_is(&p, "no-bucket", "Unavailable", "BucketMissing").await?;
    let message = l["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("bucket does not exist: create it or fix the bucket name"),
        "{message}"
    );
    assert!(has_condition(&l, "Available", "False", "BucketMissing"));

    let l = location_is(&p, "no-secret", "Unavailable", "CredentialsUnreadable").await?;
    let ready = condition(&l, "Ready").unwrap();
    assert_eq!(ready["status"], "False", "{l:#}");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Secret \"never-created\" does not exist")
            && message.contains("create it"),
        "{message}"
    );

    assert_eq!(available_metric(&controller, &p, "main"), Some(1.0));
    for name in ["wrong-secret", "unknown-key", "no-bucket", "no-secret"] {
        assert_eq!(available_metric(&controller, &p, name), Some(0.0), "{name}");
    }
    // The wrong secret never shows up anywhere.
    for name in ["wrong-secret", "unknown-key"] {
        let status = p.get("StorageLocation", name).await?["status"].to_string();
        assert!(!status.contains("not-the-secret"), "{status}");
    }
    assert!(!controller.log_text().contains("not-the-secret"));
    assert_eq!(controller.get("/livez")?.0, 200);
    p.delete().await
}

#[tokio::test]
async fn a_location_goes_unavailable_when_its_secret_gets_wrong_keys_and_back_when_fixed()
-> Result<()> {
    let p = Project::create("location_flip").await?;
    // Validation once an hour: every change seen below comes from watching the Secret.
    let mut location = p.s3_location("main", true)?;
    location["spec"]["validationFrequency"] = json!("1h");
    p.apply(location).await?;
    let controller = ControllerProcess::start(tests::controller_bin!(), &p, "only", &[]).await?;

    let first = location_is(&p, "main", "Available", "Available")
        .await
        .with_context(|| controller.log_text())?;
    assert_eq!(available_metric(&controller, &p, "main"), Some(1.0));
    let first_validation = first["status"]["lastValidationTime"].clone();

    // Someone rotates the key in the Secret, but gets it wrong.
    let s3 = shared()?.s3();
    p.secret(
        S3_SECRET,
        "cloud",
        &credentials(&s3.access_key_id, "rotated-wrongly"),
    )
    .await?;
    let broken = location_is(&p, "main", "Unavailable", "AccessDenied")
        .await
        .with_context(|| controller.log_text())?;
    assert!(has_condition(&broken, "Available", "False", "AccessDenied"));
    assert_ne!(broken["status"]["lastValidationTime"], first_validation);
    assert_eq!(available_metric(&controller, &p, "main"), Some(0.0));

    // Fixed: available again, again without waiting for the hour.
    p.secret(S3_SECRET, "cloud", &good_credentials()?).await?;
    let fixed = location_is(&p, "main", "Available", "Available")
        .await
        .with_context(|| controller.log_text())?;
    assert!(has_condition(&fixed, "Available", "True", "Available"));
    assert_eq!(available_metric(&controller, &p, "main"), Some(1.0));

    // An Event says what happened.
    let events = p.events_json().await?;
    assert!(
        events.contains("\"reason\":\"Unavailable\"") && events.contains("access denied"),
        "{events}"
    );
    assert!(!events.contains("rotated-wrongly"), "{events}");
    p.delete().await
}
