//! A project's StorageLocation opened under the platform's [`Tenancy`], attacked: every option
//! that would lend the opener's files, identity or network position is refused before anything
//! connects, addresses are checked after DNS and after redirects, `file` locations stay under
//! their root, and what a store answers is summarised. A listener on 127.0.0.1 stands for the
//! attacker's server and must receive nothing; an honest location (a real S3 server) next to
//! the attacks works.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use backup_core::StorageLocationSpec;
use backup_net::AddressPolicy;
use backup_storage::testing::{ACCESS_KEY, S3sFs, SECRET_KEY};
use backup_storage::{Availability, Repository, Tenancy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server on 127.0.0.1 that counts connections and answers each with `response`.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
    received: Arc<std::sync::Mutex<String>>,
}

impl Listener {
    async fn start(response: impl Into<String>) -> Self {
        let response: Arc<str> = response.into().into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(std::sync::Mutex::new(String::new()));
        let (count, log) = (Arc::clone(&connections), Arc::clone(&received));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let log = Arc::clone(&log);
                let response = Arc::clone(&response);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            port,
            connections,
            received,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn assert_untouched(&self) {
        assert_eq!(
            self.connections.load(Ordering::SeqCst),
            0,
            "the attacker's listener was reached: {}",
            self.received.lock().unwrap()
        );
    }
}

/// S3's refusal, with a message that must not reach any status.
fn answer_403() -> String {
    let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
                <Message>internal secret text</Message></Error>";
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const REDIRECT_TO_METADATA: &str = "HTTP/1.1 307 Temporary Redirect\r\n\
    Location: http://169.254.169.254/latest/meta-data/iam/security-credentials/\r\n\
    Connection: close\r\nContent-Length: 0\r\n\r\n";

fn aws(endpoint: &str, extra: &[(&str, &str)]) -> StorageLocationSpec {
    let mut spec = StorageLocationSpec::new("aws", "backups");
    spec.prefix = Some("fleet".into());
    spec.config.insert("region".into(), "us-east-1".into());
    spec.config.insert("s3Url".into(), endpoint.into());
    spec.config.insert("s3ForcePathStyle".into(), "true".into());
    for (k, v) in extra {
        spec.config.insert(k.to_string(), v.to_string());
    }
    spec
}

fn credentials() -> Vec<u8> {
    format!("[default]\naws_access_key_id={ACCESS_KEY}\naws_secret_access_key={SECRET_KEY}\n")
        .into_bytes()
}

fn loopback_denied() -> Tenancy {
    Tenancy {
        addresses: Arc::new(AddressPolicy::with_denied(
            AddressPolicy::parse_cidrs("127.0.0.0/8,::1").unwrap(),
        )),
        ..Tenancy::default()
    }
}

#[tokio::test]
async fn options_that_borrow_the_openers_rights_are_refused_before_any_connection() {
    let attacker = Listener::start(answer_403()).await;
    let token_file = std::env::current_exe().unwrap();
    let token_file = token_file.to_str().unwrap();
    let metadata = format!("{}/latest/api/token", attacker.url());
    let hostile: Vec<(&str, &str)> = vec![
        ("container_credentials_full_uri", &metadata),
        ("container_authorization_token_file", token_file),
        ("web_identity_token_file", token_file),
        ("endpoint_url_sts", &metadata),
        ("metadata_endpoint", &metadata),
        ("proxy_url", &metadata),
        ("skip_signature", "true"),
        ("customerKeyEncryptionFile", token_file),
        ("credentialsFile", token_file),
    ];
    for (key, value) in hostile {
        let spec = aws(&attacker.url(), &[(key, value)]);
        for creds in [Some(credentials()), None] {
            let err =
                Repository::open_spec(&spec, creds.as_deref(), &Tenancy::default()).expect_err(key);
            assert_eq!(
                err.refusal_reason(),
                Some("OptionNotAllowed"),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
    }
    for (provider, key) in [
        ("gcp", "service_account_path"),
        ("azure", "federated_token_file"),
        ("azure", "authority_host"),
        ("azure", "use_azure_cli"),
        ("azure", "msi_endpoint"),
    ] {
        let mut spec = StorageLocationSpec::new(provider, "backups");
        spec.config.insert(key.into(), metadata.clone());
        let err = Repository::open_spec(&spec, None, &Tenancy::default()).unwrap_err();
        assert_eq!(err.refusal_reason(), Some("OptionNotAllowed"), "{err}");
    }
    attacker.assert_untouched();
}

#[tokio::test]
async fn without_a_credential_secret_nothing_of_the_openers_identity_is_used() {
    let attacker = Listener::start(answer_403()).await;
    for provider in ["aws", "gcp", "azure"] {
        let spec = match provider {
            "aws" => aws(&attacker.url(), &[]),
            _ => StorageLocationSpec::new(provider, "backups"),
        };
        let err = Repository::open_spec(&spec, None, &Tenancy::default()).unwrap_err();
        assert_eq!(err.refusal_reason(), Some("CredentialRequired"), "{err}");
        assert!(err.to_string().contains("spec.credential"), "{err}");
    }
    attacker.assert_untouched();
}

#[tokio::test]
async fn a_denied_endpoint_is_refused_after_resolution_and_receives_nothing() {
    let attacker = Listener::start(answer_403()).await;
    // A literal in a denied range is refused when the location is opened.
    let spec = aws(&attacker.url(), &[]);
    let err = Repository::open_spec(&spec, Some(&credentials()), &loopback_denied()).unwrap_err();
    assert_eq!(err.refusal_reason(), Some("AddressNotAllowed"), "{err}");
    assert!(err.to_string().contains("spec.config.s3Url"), "{err}");
    // A name is judged by what it resolves to, on every connection.
    let spec = aws(&format!("http://localhost:{}", attacker.port), &[]);
    let repo = Repository::open_spec(&spec, Some(&credentials()), &loopback_denied()).unwrap();
    match repo.probe().await {
        Availability::AddressNotAllowed { message } => {
            assert!(message.contains("`localhost` resolves to"), "{message}");
        }
        other => panic!("expected AddressNotAllowed, got {other:?}"),
    }
    // Metadata addresses are refused whatever the platform says.
    let spec = aws("http://169.254.169.254", &[]);
    let err = Repository::open_spec(&spec, Some(&credentials()), &Tenancy::default()).unwrap_err();
    assert_eq!(err.refusal_reason(), Some("AddressNotAllowed"), "{err}");
    let spec = aws("http://metadata.google.internal", &[]);
    let err = Repository::open_spec(&spec, Some(&credentials()), &Tenancy::default()).unwrap_err();
    assert_eq!(err.refusal_reason(), Some("AddressNotAllowed"), "{err}");
    attacker.assert_untouched();
}

#[tokio::test]
async fn a_redirect_to_the_metadata_service_is_not_followed() {
    let store = Listener::start(REDIRECT_TO_METADATA).await;
    let spec = aws(&store.url(), &[]);
    let repo = Repository::open_spec(&spec, Some(&credentials()), &Tenancy::default()).unwrap();
    match repo.probe().await {
        Availability::AddressNotAllowed { message } => {
            assert!(message.contains("169.254.169.254"), "{message}");
        }
        other => panic!("expected AddressNotAllowed, got {other:?}"),
    }
}

#[tokio::test]
async fn what_a_store_answers_is_summarised_not_repeated() {
    let store = Listener::start(answer_403()).await;
    let spec = aws(&store.url(), &[]);
    let repo = Repository::open_spec(&spec, Some(&credentials()), &Tenancy::default()).unwrap();
    let availability = repo.probe().await;
    let text = availability.to_string();
    assert_eq!(availability.reason(), "AccessDenied", "{text}");
    assert!(text.contains("HTTP 403 Forbidden (AccessDenied)"), "{text}");
    assert!(!text.contains("internal secret text"), "{text}");
    let err = repo
        .list(backup_storage::BackupKind::Resources)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("internal secret text"), "{err}");
}

#[tokio::test]
async fn file_locations_stay_under_the_platforms_root() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let file = |dir: &std::path::Path| StorageLocationSpec::new("file", dir.to_str().unwrap());

    let err = Repository::open_spec(&file(&root.join("p")), None, &Tenancy::default()).unwrap_err();
    assert_eq!(err.refusal_reason(), Some("FileLocationsDisabled"), "{err}");
    let tenancy = Tenancy {
        file_root: Some(root.clone()),
        ..Tenancy::default()
    };
    for escape in [outside.clone(), root.join("link"), root.join("link/deeper")] {
        let err = Repository::open_spec(&file(&escape), None, &tenancy).unwrap_err();
        assert_eq!(err.refusal_reason(), Some("OutsideFileRoot"), "{err}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    let repo = Repository::open_spec(&file(&root.join("p1")), None, &tenancy).unwrap();
    assert!(repo.probe().await.is_available());
    assert!(root.join("p1").is_dir());
}

#[tokio::test]
async fn an_honest_location_works_beside_the_attacks() {
    let server = S3sFs::start().unwrap_or_else(|e| panic!("these tests need s3s-fs: {e}"));
    server.create_bucket("backups").unwrap();
    let spec = aws(&server.endpoint(), &[("checksumAlgorithm", "SHA256")]);
    let repo = Repository::open_spec(&spec, Some(&credentials()), &Tenancy::default()).unwrap();
    let availability = repo.probe().await;
    assert!(availability.is_available(), "{availability}");
    let err = Repository::open_spec(
        &aws(&server.endpoint(), &[("checksumAlgorithm", "CRC32")]),
        Some(&credentials()),
        &Tenancy::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("SHA256"), "{err}");
    // The environment's keys are not the location's: without them the store refuses.
    let wrong = b"[default]\naws_access_key_id=nobody\naws_secret_access_key=nothing\n";
    let repo = Repository::open_spec(&spec, Some(wrong), &Tenancy::default()).unwrap();
    assert_eq!(repo.probe().await.reason(), "AccessDenied");
}
