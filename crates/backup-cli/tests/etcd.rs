//! `backupctl etcd ...` as a user runs it, against a real etcd and real storage.

use std::path::Path;

use backup_etcd::testing::{EtcdConfig, EtcdServer, free_port};
use backup_storage::testing::S3sFs;

mod common;

use common::{backupctl, stderr, stdout};

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

async fn seeded_etcd(keys: usize) -> EtcdServer {
    let server = EtcdServer::start().await.unwrap();
    let mut client = server.client().await.unwrap();
    for i in 0..keys {
        client
            .put(
                format!("/cli/{i:04}"),
                format!("value-{i}").repeat(i % 50 + 1),
            )
            .await
            .unwrap();
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_list_restore_and_prune_through_the_cli() {
    let server = seeded_etcd(200).await;
    let storage = tempfile::tempdir().unwrap();
    let location = file_url(storage.path());
    let scope = ["--project", "p1", "--cluster", "c1"];

    let out = backupctl(
        &[
            &[
                "etcd",
                "snapshot",
                "--endpoints",
                server.endpoint(),
                "--location",
                &location,
            ],
            &["--name", "once"][..],
            &scope[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Only the name on stdout (scripts capture it); no progress bar when stderr is not a tty.
    assert_eq!(stdout(&out), "once\n");
    assert!(!stderr(&out).contains('['), "{}", stderr(&out));
    assert!(
        storage
            .path()
            .join("p1/c1/etcd-snapshots/once/snapshot.db.zst")
            .is_file()
    );

    let mut timestamped = Vec::new();
    for _ in 0..3 {
        let out = backupctl(
            &[
                &[
                    "etcd",
                    "snapshot",
                    "--endpoints",
                    server.endpoint(),
                    "--location",
                    &location,
                ],
                &["--name", "nightly", "--timestamped", "--keep", "5"][..],
                &scope[..],
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let name = stdout(&out).trim().to_string();
        assert!(
            name.starts_with("nightly-") && name.len() == "nightly-".len() + 14,
            "{name}"
        );
        timestamped.push(name);
        // Timestamps have one-second resolution; distinct names need distinct seconds.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }

    let out = backupctl(
        &[
            &["etcd", "list", "--location", &location, "-o", "json"][..],
            &scope[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["checksum_ok"] == true), "{listed}");
    assert!(
        rows.iter().all(|r| r["revision"].as_i64().unwrap() > 200),
        "{listed}"
    );

    let out = backupctl(&[&["etcd", "list", "--location", &location][..], &scope[..]].concat());
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("REVISION") && table.contains(" ok"),
        "{table}"
    );

    // Another scope sees nothing.
    let out = backupctl(&[
        "etcd",
        "list",
        "--location",
        &location,
        "-o",
        "json",
        "--cluster",
        "c2",
    ]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap(),
        serde_json::json!([])
    );

    let out = backupctl(
        &[
            &[
                "etcd",
                "prune",
                "--location",
                &location,
                "--name",
                "nightly",
                "--keep",
                "1",
                "-o",
                "json",
            ][..],
            &scope[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let deleted: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        deleted,
        serde_json::json!([{"deleted": timestamped[0]}, {"deleted": timestamped[1]}])
    );

    // Restore the newest and start etcd on it.
    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("restored");
    let peer_port = free_port().unwrap();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let out = backupctl(
        &[
            &[
                "etcd",
                "restore",
                "--location",
                &location,
                "--backup",
                &timestamped[2],
            ][..],
            &[
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--member-name",
                "m1",
            ][..],
            &[
                "--initial-cluster",
                &format!("m1={peer}"),
                "--initial-advertise-peer-urls",
                &peer,
            ][..],
            &scope[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("restored snapshot"),
        "{}",
        stdout(&out)
    );
    drop(server);
    let restored = EtcdServer::start_with(EtcdConfig {
        name: Some("m1".into()),
        data_dir: Some(data_dir.clone()),
        peer_port: Some(peer_port),
        tls: None,
    })
    .await
    .unwrap();
    let mut client = restored.client().await.unwrap();
    let value = client.get("/cli/0123").await.unwrap();
    assert_eq!(value.as_deref(), Some("value-123".repeat(24).as_bytes()));

    // Restoring again into the now non-empty dir is refused.
    let out = backupctl(
        &[
            &[
                "etcd",
                "restore",
                "--location",
                &location,
                "--backup",
                &timestamped[2],
            ][..],
            &["--data-dir", data_dir.to_str().unwrap()][..],
            &scope[..],
        ]
        .concat(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_to_s3_with_options_and_a_corrupt_snapshot_is_flagged() {
    let server = seeded_etcd(50).await;
    let s3 = S3sFs::start().unwrap();
    let bucket = s3.create_bucket("etcd").unwrap();
    let options: Vec<String> = s3
        .options()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut args = vec![
        "etcd",
        "snapshot",
        "--endpoints",
        server.endpoint(),
        "--location",
        "s3://etcd/fleet",
        "--name",
        "s3-once",
    ];
    for option in &options {
        args.extend(["--option", option]);
    }
    let out = backupctl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "s3-once");

    // Flip a byte in the stored object (s3s-fs keeps objects as files).
    let stored = bucket.join("fleet/default/local/etcd-snapshots/s3-once/snapshot.db.zst");
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&stored, bytes).unwrap();

    let mut list = vec![
        "etcd",
        "list",
        "--location",
        "s3://etcd/fleet",
        "-o",
        "json",
    ];
    for option in &options {
        list.extend(["--option", option]);
    }
    let out = backupctl(&list);
    assert!(
        !out.status.success(),
        "a corrupt snapshot must fail the listing's exit code"
    );
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["checksum_ok"], false, "{rows}");
    assert!(
        rows[0]["problem"].as_str().unwrap().contains("SHA-256"),
        "{rows}"
    );

    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("m");
    let mut restore = vec![
        "etcd",
        "restore",
        "--location",
        "s3://etcd/fleet",
        "--backup",
        "s3-once",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    for option in &options {
        restore.extend(["--option", option]);
    }
    let out = backupctl(&restore);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is corrupt") && stderr(&out).contains("SHA-256"),
        "{}",
        stderr(&out)
    );
    assert!(!data_dir.exists());
}

#[test]
fn keep_outside_one_to_fifty_is_refused() {
    let storage = tempfile::tempdir().unwrap();
    let location = file_url(storage.path());
    for keep in ["0", "51"] {
        let out = backupctl(&[
            "etcd",
            "prune",
            "--location",
            &location,
            "--name",
            "n",
            "--keep",
            keep,
        ]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!("keep count {keep} is out of range")),
            "{}",
            stderr(&out)
        );
        let out = backupctl(&[
            "etcd",
            "snapshot",
            "--endpoints",
            "http://127.0.0.1:1",
            "--location",
            &location,
            "--name",
            "n",
            "--keep",
            keep,
        ]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("at most 50"), "{}", stderr(&out));
    }
}

#[test]
fn unreachable_etcd_and_missing_backups_are_named() {
    let storage = tempfile::tempdir().unwrap();
    let location = file_url(storage.path());
    let endpoint = format!("http://127.0.0.1:{}", free_port().unwrap());
    let out = backupctl(&[
        "etcd",
        "snapshot",
        "--endpoints",
        &endpoint,
        "--location",
        &location,
        "--name",
        "n",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("`{endpoint}` is unreachable")),
        "{}",
        stderr(&out)
    );

    let target = tempfile::tempdir().unwrap();
    let out = backupctl(&[
        "etcd",
        "restore",
        "--location",
        &location,
        "--backup",
        "ghost",
        "--data-dir",
        target.path().join("d").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("backup `ghost` not found"),
        "{}",
        stderr(&out)
    );

    let out = backupctl(&[
        "etcd",
        "snapshot",
        "--endpoints",
        &endpoint,
        "--location",
        &location,
        "--name",
        "n",
        "--cacert",
        "/nonexistent/ca.pem",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read TLS CA certificate `/nonexistent/ca.pem`"),
        "{}",
        stderr(&out)
    );
}

/// Decompresses a zstd file (what `zstd -d` does).
fn unzstd(input: &Path, output: &Path) {
    let mut decoder =
        zstd::stream::read::Decoder::new(std::fs::File::open(input).unwrap()).unwrap();
    let mut out = std::fs::File::create(output).unwrap();
    std::io::copy(&mut decoder, &mut out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_snapshots_use_age_keygen_keys_and_decrypt_with_the_age_cli() {
    tests::age::ensure_installed().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.txt");
    let recipient = tests::age::keygen(&key).unwrap();
    let recipients = keys.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# etcd backups\n\n{recipient}\n")).unwrap();
    let stranger = keys.path().join("stranger.txt");
    tests::age::keygen(&stranger).unwrap();

    let server = seeded_etcd(300).await;
    let storage = tempfile::tempdir().unwrap();
    let location = file_url(storage.path());
    let out = backupctl(&[
        "etcd",
        "snapshot",
        "--endpoints",
        server.endpoint(),
        "--location",
        &location,
        "--name",
        "enc",
        "--encrypt-to-file",
        recipients.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "enc\n");
    let backup_dir = storage.path().join("default/local/etcd-snapshots/enc");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("backup-manifest.json")).unwrap())
            .unwrap();
    let fingerprint = manifest["artifacts"][0]["encryption"]["recipients"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stderr(&out).contains(&fingerprint), "{}", stderr(&out));
    let stored = backup_dir.join("snapshot.db.zst");
    assert!(
        std::fs::read(&stored)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );

    // The real age CLI decrypts it into exactly the zstd stream of etcd's snapshot: its trailer
    // verifies, its hash is the one recorded, and etcd's own tool restores it.
    let decrypted = tests::age::decrypt_beside(&key, &stored).unwrap();
    let db = keys.path().join("snapshot.db");
    unzstd(&decrypted, &db);
    let mut verifier = backup_etcd::TrailingHashVerifier::new();
    verifier.push(&std::fs::read(&db).unwrap(), |_| {});
    let verified = verifier.finish().unwrap();
    assert_eq!(
        manifest["attributes"]["etcd.snapshot-sha256"],
        verified.sha256_hex()
    );
    let by_etcdctl = keys.path().join("by-etcdctl");
    let peer_port = free_port().unwrap();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let tool = backup_etcd::find_restore_tool().unwrap();
    let restored = std::process::Command::new(&tool)
        .args(["snapshot", "restore"])
        .arg(&db)
        .arg("--data-dir")
        .arg(&by_etcdctl)
        .args(["--name", "m1", "--initial-cluster", &format!("m1={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", stderr(&restored));
    drop(server);
    {
        let etcd = EtcdServer::start_with(EtcdConfig {
            name: Some("m1".into()),
            data_dir: Some(by_etcdctl),
            peer_port: Some(peer_port),
            tls: None,
        })
        .await
        .unwrap();
        let mut client = etcd.client().await.unwrap();
        let value = client.get("/cli/0123").await.unwrap();
        assert_eq!(value.as_deref(), Some("value-123".repeat(24).as_bytes()));
    }

    // Listing verifies the stored checksum without a key.
    let out = backupctl(&["etcd", "list", "--location", &location, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"checksum_ok\": true"),
        "{}",
        stdout(&out)
    );

    // Our restore: refused without the key and with another one, naming the fingerprint and
    // creating nothing; with the age-keygen identity file it restores.
    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("restored");
    let restore = |extra: &[&str]| {
        backupctl(
            &[
                &[
                    "etcd",
                    "restore",
                    "--location",
                    &location,
                    "--backup",
                    "enc",
                ][..],
                &["--data-dir", data_dir.to_str().unwrap()][..],
                extra,
            ]
            .concat(),
        )
    };
    for extra in [
        &[][..],
        &["--identity-file", stranger.to_str().unwrap()][..],
    ] {
        let out = restore(extra);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(&fingerprint), "{}", stderr(&out));
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    }
    let out = restore(&["--identity-file", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data_dir.join("member/snap").is_dir());
}

#[test]
fn bad_keys_are_refused_before_connecting_or_writing() {
    let keys = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let location = file_url(storage.path());
    let unreachable = "http://127.0.0.1:1";
    let snapshot = |extra: &[&str]| {
        backupctl(
            &[
                &["etcd", "snapshot", "--endpoints", unreachable][..],
                &["--location", &location, "--name", "n"][..],
                extra,
            ]
            .concat(),
        )
    };
    let secret = keys.path().join("secret.txt");
    std::fs::write(
        &secret,
        backup_storage::Identities::generate().to_identity_file(),
    )
    .unwrap();
    for (extra, expected) in [
        (
            vec!["--encrypt-to", "age1bogus"],
            "invalid age recipient `age1bogus`",
        ),
        (
            vec!["--encrypt-to", "ssh-ed25519 AAAA"],
            "SSH keys are not supported",
        ),
        (
            vec!["--encrypt-to-file", "/nonexistent/recipients.txt"],
            "cannot read recipients file /nonexistent/recipients.txt",
        ),
        // A secret key given where a public one belongs: named on its line, never echoed.
        (
            vec!["--encrypt-to-file", secret.to_str().unwrap()],
            "on line 2: this is a secret key",
        ),
    ] {
        let out = snapshot(&extra);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert!(
            !err.contains("unreachable"),
            "validated before connecting: {err}"
        );
        assert!(!err.contains("AGE-SECRET-KEY-1"), "{err}");
    }

    // An identity file that holds a recipient, or garbage: refused before the data dir.
    let wrong = keys.path().join("recipient.txt");
    std::fs::write(
        &wrong,
        format!(
            "{}\n",
            backup_storage::Identities::generate().recipients()[0]
        ),
    )
    .unwrap();
    let data_dir = keys.path().join("data");
    let out = backupctl(&[
        "etcd",
        "restore",
        "--location",
        &location,
        "--backup",
        "ghost",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--identity-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid age identity file: line 1"),
        "{}",
        stderr(&out)
    );
    assert!(!data_dir.exists());
}
