//! Velero's provider credential files, turned into object_store options.
//!
//! A StorageLocation (like Velero's BSL) points at a Secret key holding the file Velero's
//! plugin for the provider reads: for `aws` the AWS shared-credentials INI file, for `gcp` a
//! service-account JSON key, for `azure` `KEY=VALUE` lines. The controller hands us the bytes;
//! we never echo them in errors (they are secrets), only say which key is missing or malformed.

use std::collections::BTreeMap;

use crate::error::{Result, StorageError};

/// The profile Velero reads from an AWS credentials file unless the location's config names
/// one with `profile`.
pub const DEFAULT_AWS_PROFILE: &str = "default";

fn invalid(provider: &str, reason: impl Into<String>) -> StorageError {
    StorageError::InvalidCredentials {
        provider: provider.to_string(),
        reason: reason.into(),
    }
}

/// The object_store options that authenticate with `file` for `provider` (`aws`, `gcp`,
/// `azure`, or their `velero.io/` plugin names). `profile` selects the AWS profile.
pub fn credential_options(
    provider: &str,
    file: &[u8],
    profile: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let text = std::str::from_utf8(file)
        .map_err(|_| invalid(provider, "the credentials file is not UTF-8 text"))?;
    match provider.trim_start_matches("velero.io/") {
        "aws" => aws(text, profile.unwrap_or(DEFAULT_AWS_PROFILE)),
        "gcp" => gcp(text),
        "azure" => azure(text),
        other => Err(invalid(
            other,
            "credentials are only understood for providers aws, gcp and azure",
        )),
    }
}

/// The `[profile]` section of an AWS shared-credentials file.
fn aws(text: &str, profile: &str) -> Result<BTreeMap<String, String>> {
    let mut section: Option<&str> = None;
    let mut found_profile = false;
    let mut values = BTreeMap::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            section = Some(name.strip_prefix("profile ").unwrap_or(name).trim());
            found_profile |= section == Some(profile);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(
                "aws",
                format!(
                    "line {} is neither a [profile] header nor key = value",
                    number + 1
                ),
            ));
        };
        if section == Some(profile) {
            values.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    if !found_profile {
        return Err(invalid(
            "aws",
            format!(
                "the credentials file has no [{profile}] profile; Velero's format is \
                 \"[default]\\naws_access_key_id=...\\naws_secret_access_key=...\""
            ),
        ));
    }
    let mut options = BTreeMap::new();
    for (file_key, option) in [
        ("aws_access_key_id", "access_key_id"),
        ("aws_secret_access_key", "secret_access_key"),
    ] {
        let value = values
            .get(file_key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                invalid(
                    "aws",
                    format!("profile [{profile}] has no {file_key}; add it to the Secret"),
                )
            })?;
        options.insert(option.to_string(), value.clone());
    }
    if let Some(token) = values.get("aws_session_token").filter(|v| !v.is_empty()) {
        options.insert("token".to_string(), token.clone());
    }
    Ok(options)
}

/// A GCP service-account key (JSON), passed to object_store as is.
fn gcp(text: &str) -> Result<BTreeMap<String, String>> {
    let key: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        invalid(
            "gcp",
            format!(
                "the credentials file is not a service-account JSON key (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    if key.get("private_key").is_none() || key.get("client_email").is_none() {
        return Err(invalid(
            "gcp",
            "the service-account key has no private_key or client_email; download a JSON key \
             for the service account",
        ));
    }
    Ok(BTreeMap::from([(
        "service_account_key".to_string(),
        text.to_string(),
    )]))
}

/// Velero's Azure plugin file: `AZURE_*=value` lines.
fn azure(text: &str) -> Result<BTreeMap<String, String>> {
    let mut options = BTreeMap::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(
                "azure",
                format!("line {} is not KEY=VALUE", number + 1),
            ));
        };
        let option = match key.trim() {
            "AZURE_STORAGE_ACCOUNT_ACCESS_KEY" => "access_key",
            "AZURE_CLIENT_ID" => "client_id",
            "AZURE_CLIENT_SECRET" => "client_secret",
            "AZURE_TENANT_ID" => "tenant_id",
            // Subscription, resource group and cloud name select where Velero's plugin looks
            // up the account key; with the key or a client secret given they are not needed.
            _ => continue,
        };
        options.insert(option.to_string(), value.trim().to_string());
    }
    if !options.contains_key("access_key") && !options.contains_key("client_secret") {
        return Err(invalid(
            "azure",
            "the credentials file has neither AZURE_STORAGE_ACCOUNT_ACCESS_KEY nor \
             AZURE_CLIENT_SECRET; add one of them",
        ));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_reads_the_profile_velero_reads() {
        let file = b"[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s3cr3t\n\n[other]\naws_access_key_id=AKIA2\naws_secret_access_key=x\naws_session_token=t\n";
        let o = credential_options("aws", file, None).unwrap();
        assert_eq!(o["access_key_id"], "AKIA1");
        assert_eq!(o["secret_access_key"], "s3cr3t");
        assert!(!o.contains_key("token"));
        let o = credential_options("velero.io/aws", file, Some("other")).unwrap();
        assert_eq!(o["access_key_id"], "AKIA2");
        assert_eq!(o["token"], "t");
    }

    #[test]
    fn aws_errors_name_what_is_missing_and_never_the_secret() {
        let e = credential_options("aws", b"[default]\naws_access_key_id=AKIA1\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("aws_secret_access_key"), "{e}");
        let e = credential_options("aws", b"[prod]\naws_access_key_id=AKIA1\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [default] profile"), "{e}");
        let e = credential_options("aws", b"[default]\nhunter2\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("hunter2"), "{e}");
        assert!(credential_options("aws", &[0xff, 0xfe], None).is_err());
    }

    #[test]
    fn gcp_takes_a_service_account_key() {
        let key = br#"{"type":"service_account","client_email":"a@b.iam","private_key":"-----BEGIN PRIVATE KEY-----\n"}"#;
        let o = credential_options("gcp", key, None).unwrap();
        assert!(o["service_account_key"].contains("a@b.iam"));
        assert!(credential_options("gcp", b"{}", None).is_err());
        assert!(credential_options("gcp", b"not json", None).is_err());
    }

    #[test]
    fn azure_maps_velero_plugin_keys() {
        let file = b"AZURE_SUBSCRIPTION_ID=sub\nAZURE_STORAGE_ACCOUNT_ACCESS_KEY=key==\nAZURE_CLOUD_NAME=AzurePublicCloud\n";
        let o = credential_options("azure", file, None).unwrap();
        assert_eq!(o["access_key"], "key==");
        assert_eq!(o.len(), 1);
        assert!(credential_options("azure", b"AZURE_CLOUD_NAME=x\n", None).is_err());
    }

    #[test]
    fn other_providers_take_no_credentials() {
        let e = credential_options("file", b"x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("aws, gcp and azure"), "{e}");
    }
}
