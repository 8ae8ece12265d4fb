//! Backends for the conformance suite, and a store wrapper that records deletes in order.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_storage::object_store::path::Path;
use backup_storage::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use backup_storage::testing::S3sFs;
use backup_storage::testing::azurite::Azurite;
use backup_storage::{Location, Repository};
use futures::StreamExt;
use futures::stream::BoxStream;

/// Which backend a fixture runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    File,
    S3,
    /// Memory behind [`backup_storage::write_once::WriteOnceStore`]: any second write of a
    /// key fails, so every check also proves nothing it stores is ever rewritten.
    WriteOnce,
    /// Azure Blob Storage: a private Azurite per fixture, through an `az://` location.
    Azure,
    /// Azurite behind [`backup_storage::write_once::WriteOnceStore`].
    AzureWriteOnce,
}

/// A base store (already confined to a base prefix) plus whatever keeps it alive.
pub struct Fixture {
    pub store: Arc<dyn ObjectStore>,
    /// The same objects without any wrapper: what a test uses to damage them as bit rot or an
    /// attacker with direct bucket access would.
    pub raw: Arc<dyn ObjectStore>,
    pub backend: Backend,
    _tempdir: Option<tempfile::TempDir>,
    pub s3: Option<S3sFs>,
    pub azurite: Option<Azurite>,
}

impl Fixture {
    pub fn repo(&self) -> Repository {
        Repository::new(Arc::clone(&self.store))
    }
}

pub fn fixture(backend: Backend) -> Fixture {
    let none = BTreeMap::new();
    match backend {
        Backend::Memory => {
            let store = Location::parse("memory:///base")
                .unwrap()
                .open(&none)
                .unwrap();
            Fixture {
                raw: store.clone(),
                store,
                backend,
                _tempdir: None,
                s3: None,
                azurite: None,
            }
        }
        Backend::WriteOnce => {
            let raw = Location::parse("memory:///base")
                .unwrap()
                .open(&none)
                .unwrap();
            Fixture {
                store: Arc::new(backup_storage::write_once::WriteOnceStore::new(raw.clone())),
                raw,
                backend,
                _tempdir: None,
                s3: None,
                azurite: None,
            }
        }
        Backend::File => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("file://{}", dir.path().join("store").display());
            let store = Location::parse(&url).unwrap().open(&none).unwrap();
            Fixture {
                raw: store.clone(),
                store,
                backend,
                _tempdir: Some(dir),
                s3: None,
                azurite: None,
            }
        }
        Backend::S3 => {
            // Never skip: a missing binary fails the test with the install command.
            let server =
                S3sFs::start().unwrap_or_else(|e| panic!("S3 conformance tests need s3s-fs: {e}"));
            server.create_bucket("conformance").unwrap();
            let store = Location::parse("s3://conformance/base")
                .unwrap()
                .open_with_env(&server.options(), |_| None)
                .unwrap();
            Fixture {
                raw: store.clone(),
                store,
                backend,
                _tempdir: None,
                s3: Some(server),
                azurite: None,
            }
        }
        Backend::Azure | Backend::AzureWriteOnce => {
            // Never skip: a missing Azurite fails the test with the install command.
            let server = Azurite::start()
                .unwrap_or_else(|e| panic!("Azure conformance tests need Azurite: {e}"));
            server.create_container("conformance").unwrap();
            let raw = Location::parse("az://conformance/base")
                .unwrap()
                .open_with_env(&server.options(), |_| None)
                .unwrap();
            let store: Arc<dyn ObjectStore> = match backend {
                Backend::AzureWriteOnce => {
                    Arc::new(backup_storage::write_once::WriteOnceStore::new(raw.clone()))
                }
                _ => raw.clone(),
            };
            Fixture {
                store,
                raw,
                backend,
                _tempdir: None,
                s3: None,
                azurite: Some(server),
            }
        }
    }
}

/// Passes everything through and records the order of deleted paths.
#[derive(Debug)]
pub struct RecordingStore {
    pub inner: Arc<dyn ObjectStore>,
    pub deleted: Arc<Mutex<Vec<String>>>,
}

impl fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recording({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let log = Arc::clone(&self.deleted);
        let recorded = locations
            .inspect(move |p| {
                if let Ok(p) = p {
                    log.lock().unwrap().push(p.to_string());
                }
            })
            .boxed();
        self.inner.delete_stream(recorded)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Deterministic, incompressible-looking bytes (xorshift), for large uploads.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every object path in the store, sorted.
pub async fn all_paths(store: &dyn ObjectStore) -> Vec<String> {
    let mut paths: Vec<String> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    paths.sort();
    paths
}
