//! The keys a StorageLocation's `config` may hold, per provider: an allow-list.
//!
//! A location's `config` is written by a project but used by the controller, with the
//! controller's files, environment and network position. Object stores' client libraries take
//! options that read a file, call a credential or metadata endpoint, go through a proxy or stop
//! signing requests; any of them would lend the controller's rights to the project. So only
//! keys that describe the store itself are accepted: Velero's plugin keys of that kind (as
//! `velero-plugin-for-aws`, `-gcp` and `-microsoft-azure` validate them), and nothing that says
//! how to obtain credentials, which come from the location's credential Secret alone.
//!
//! [`LOCATION_OPTIONS`] is the one table: the storage crate maps exactly these keys, and the
//! README shows it (a test compares the two).

use std::collections::BTreeMap;

/// One allowed `config` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationOption {
    /// The provider (`aws`, `gcp`, `azure`), without Velero's `velero.io/` plugin prefix.
    pub provider: &'static str,
    /// The key, as Velero's plugin spells it.
    pub key: &'static str,
    /// What it means, and how the direct engine uses it.
    pub meaning: &'static str,
}

const fn option(
    provider: &'static str,
    key: &'static str,
    meaning: &'static str,
) -> LocationOption {
    LocationOption {
        provider,
        key,
        meaning,
    }
}

/// Every key a StorageLocation's `config` may hold. `gcp` and `file` take none: GCS is
/// addressed by the bucket alone and authenticated by the credential Secret's key file.
pub const LOCATION_OPTIONS: &[LocationOption] = &[
    option("aws", "region", "the bucket's region"),
    option(
        "aws",
        "s3Url",
        "the endpoint of an S3-compatible store (MinIO, Ceph, ...); its address is checked on every connection",
    ),
    option(
        "aws",
        "publicUrl",
        "the endpoint Velero puts in download links; the direct engine makes no links and does not use it",
    ),
    option(
        "aws",
        "s3ForcePathStyle",
        "path-style bucket addressing (`true`, the default with s3Url) or virtual-hosted (`false`)",
    ),
    option(
        "aws",
        "insecureSkipTLSVerify",
        "`true` skips checking the endpoint's certificate; prefer objectStorage.caCert",
    ),
    option(
        "aws",
        "serverSideEncryption",
        "server-side encryption of uploads: `AES256` or `aws:kms`",
    ),
    option("aws", "kmsKeyId", "the KMS key of `aws:kms` encryption"),
    option(
        "aws",
        "checksumAlgorithm",
        "the upload checksum: `SHA256`, or empty for none (the direct engine supports these)",
    ),
    option(
        "aws",
        "profile",
        "the profile to read from the credential Secret's credentials file (default `default`)",
    ),
    option("azure", "storageAccount", "the storage account"),
    option(
        "azure",
        "storageAccountURI",
        "the blob endpoint (default `https://<storageAccount>.blob.core.windows.net`); its address is checked on every connection",
    ),
    option(
        "azure",
        "resourceGroup",
        "the account's resource group, which Velero uses to look up its key; the direct engine takes the key from the credential Secret",
    ),
    option(
        "azure",
        "subscriptionId",
        "the account's subscription, as resourceGroup",
    ),
];

/// A `config` key outside [`LOCATION_OPTIONS`] for its provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "config key {key:?} is not allowed for provider {provider:?}: {allowed}; the allowed keys are \
     listed in the README (\"Storage location options\"). Credentials belong in the credential \
     Secret, and no option may name a file, a credential or metadata endpoint or a proxy, or turn \
     signing off"
)]
pub struct OptionNotAllowed {
    /// The provider, without `velero.io/`.
    pub provider: String,
    /// The refused key.
    pub key: String,
    /// What is allowed for the provider, in words.
    pub allowed: String,
}

/// The allowed keys of `provider` (`aws` or `velero.io/aws`, ...).
pub fn allowed_keys(provider: &str) -> impl Iterator<Item = &'static str> + '_ {
    let provider = provider.trim_start_matches("velero.io/");
    LOCATION_OPTIONS
        .iter()
        .filter(move |o| o.provider == provider)
        .map(|o| o.key)
}

/// Refuses the first key of `config` that is not allowed for `provider`.
pub fn check_options(
    provider: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), OptionNotAllowed> {
    let allowed: Vec<&str> = allowed_keys(provider).collect();
    match config.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(OptionNotAllowed {
            provider: provider.trim_start_matches("velero.io/").to_string(),
            key: key.clone(),
            allowed: match allowed.is_empty() {
                true => "this provider takes no config keys".to_string(),
                false => format!("allowed are {}", allowed.join(", ")),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn store_describing_keys_pass() {
        check_options(
            "aws",
            &config(&[
                ("region", "us-east-1"),
                ("s3Url", "http://127.0.0.1:9000"),
                ("s3ForcePathStyle", "true"),
            ]),
        )
        .unwrap();
        check_options(
            "velero.io/azure",
            &config(&[("storageAccount", "a"), ("resourceGroup", "rg")]),
        )
        .unwrap();
        check_options("gcp", &BTreeMap::new()).unwrap();
    }

    #[test]
    fn anything_that_borrows_the_controllers_rights_is_refused() {
        // object_store's own keys and Velero's credential keys alike: files, endpoints that
        // hand out credentials, proxies, unsigned requests.
        for (provider, key) in [
            ("aws", "container_credentials_full_uri"),
            ("aws", "container_authorization_token_file"),
            ("aws", "web_identity_token_file"),
            ("aws", "endpoint_url_sts"),
            ("aws", "metadata_endpoint"),
            ("aws", "imdsv1_fallback"),
            ("aws", "proxy_url"),
            ("aws", "skip_signature"),
            ("aws", "access_key_id"),
            ("aws", "credentialsFile"),
            ("aws", "customerKeyEncryptionFile"),
            ("aws", "customerKeyEncryptionSecret"),
            ("gcp", "service_account_path"),
            ("gcp", "credentialsFile"),
            ("gcp", "serviceAccount"),
            ("azure", "federated_token_file"),
            ("azure", "authority_host"),
            ("azure", "use_azure_cli"),
            ("azure", "msi_endpoint"),
            ("azure", "useAAD"),
            ("azure", "activeDirectoryAuthorityURI"),
            ("azure", "storageAccountKeyEnvVar"),
            ("file", "anything"),
            ("someplugin", "region"),
        ] {
            // Beside an allowed key, so the refused one is the one named.
            let allowed = allowed_keys(provider).next().unwrap_or(key);
            let err =
                check_options(provider, &config(&[(allowed, "x"), (key, "v")])).expect_err(key);
            assert_eq!(err.key, key);
            let text = err.to_string();
            assert!(text.contains(&format!("{key:?}")), "{text}");
            assert!(text.contains("Storage location options"), "{text}");
        }
        let err = check_options("gcp", &config(&[("kmsKeyName", "k")])).unwrap_err();
        assert!(err.to_string().contains("takes no config keys"), "{err}");
        let err = check_options("aws", &config(&[("proxy_url", "p")])).unwrap_err();
        assert!(
            err.to_string().contains("allowed are region, s3Url"),
            "{err}"
        );
    }

    /// The README's "Storage location options" table, row by row: (provider, key, meaning).
    fn readme_rows() -> Vec<(String, String, String)> {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("### Storage location options")
            .nth(1)
            .expect("the README has a \"Storage location options\" section");
        section
            .lines()
            .skip_while(|l| !l.starts_with("| provider |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
                assert_eq!(cells.len(), 3, "{row}");
                (
                    cells[0].to_string(),
                    cells[1].trim_matches('`').to_string(),
                    cells[2].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_readme_shows_exactly_this_table() {
        let code: Vec<(String, String, String)> = LOCATION_OPTIONS
            .iter()
            .map(|o| (o.provider.into(), o.key.into(), o.meaning.into()))
            .collect();
        assert_eq!(
            readme_rows(),
            code,
            "README.md's \"Storage location options\" table differs from LOCATION_OPTIONS"
        );
    }

    #[test]
    fn keys_are_case_sensitive_as_in_velero() {
        assert!(check_options("aws", &config(&[("S3URL", "x")])).is_err());
    }
}
