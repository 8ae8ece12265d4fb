//! Shared helpers: deterministic test data written to a real etcd, and reading it back.

#![allow(dead_code)]

use std::collections::BTreeMap;

use backup_etcd::testing::{EtcdConfig, EtcdServer, TestClient, free_port};
use backup_etcd::{MemberOptions, RestoreRequest, restore};
use backup_storage::{BackupName, Repository};

/// A small xorshift generator: deterministic data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// `count` keys under `/test/` with sizes from 0 B to ~6 KiB; half random (incompressible),
/// half repetitive text. Written in transactions of 100 puts.
pub fn test_data(count: usize, seed: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let key = format!("/test/key-{i:06}").into_bytes();
            let len = match i % 10 {
                0 => 0,
                1..=6 => (rng.next() % 512) as usize,
                _ => (rng.next() % 6000) as usize,
            };
            let value = if i % 2 == 0 {
                rng.bytes(len)
            } else {
                format!("value {i} ").repeat(len / 8 + 1).into_bytes()[..len].to_vec()
            };
            (key, value)
        })
        .collect()
}

pub async fn write_all(client: &mut TestClient, data: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let entries: Vec<_> = data.iter().collect();
    for batch in entries.chunks(100) {
        let pairs = batch.iter().map(|(k, v)| (k.to_vec(), v.to_vec()));
        client.put_all(pairs).await.unwrap();
    }
}

/// Every key under `/test/` and the store's revision, read in pages at one revision (a single
/// response would exceed gRPC's 4 MiB message limit).
pub async fn read_all(client: &mut TestClient) -> (BTreeMap<Vec<u8>, Vec<u8>>, i64) {
    let mut data = BTreeMap::new();
    let mut from = b"/test/".to_vec();
    let mut revision = 0;
    loop {
        let response = client
            .range(from.clone(), b"/test0".to_vec(), 500, revision)
            .await
            .unwrap();
        if revision == 0 {
            revision = response.header.as_ref().unwrap().revision;
        }
        let more = response.more;
        let last = response.kvs.last().map(|kv| kv.key.clone());
        for kv in response.kvs {
            data.insert(kv.key, kv.value);
        }
        match last {
            Some(mut last) if more => {
                last.push(0);
                from = last;
            }
            _ => break,
        }
    }
    (data, revision)
}

/// Restores `backup` into a new data dir, starts etcd on it and returns its keys and revision.
pub async fn restore_and_read(
    repo: &Repository,
    backup: &BackupName,
) -> (BTreeMap<Vec<u8>, Vec<u8>>, i64) {
    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("member");
    let peer_port = free_port().unwrap();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let request = RestoreRequest {
        backup: backup.clone(),
        data_dir: data_dir.clone(),
        member: MemberOptions {
            name: Some("restored".into()),
            initial_cluster: Some(format!("restored={peer}")),
            initial_cluster_token: Some("restored-token".into()),
            initial_advertise_peer_urls: Some(peer),
        },
        tool: None,
    };
    let outcome = restore(repo, &request).await.unwrap();
    assert!(
        data_dir.join("member").join("snap").is_dir(),
        "no member dir"
    );
    let server = EtcdServer::start_with(EtcdConfig {
        name: Some("restored".into()),
        data_dir: Some(data_dir),
        peer_port: Some(peer_port),
        tls: None,
    })
    .await
    .unwrap();
    let mut client = server.client().await.unwrap();
    let (data, revision) = read_all(&mut client).await;
    assert_eq!(outcome.revision, Some(revision));
    (data, revision)
}
