//! A store wrapper that lets every key be written exactly once, the way an S3 Object Lock
//! (WORM) bucket keeps every version it was given: a second write of a key fails, whether or
//! not the first one was deleted since. Optionally it also refuses deletions, as an immutable
//! bucket does during its retention period.
//!
//! The conformance suites run every backup, etcd and restore path on top of it, which proves
//! that nothing we store is ever rewritten: artifacts are written once, the manifest last and
//! once, so backups can live in Object Lock buckets (velero #8686).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// Every key ever written through this wrapper (shared with its multipart uploads).
type Written = Arc<Mutex<HashSet<Path>>>;

/// Refuses any second write of a key, and (optionally) every deletion.
pub struct WriteOnceStore {
    inner: Arc<dyn ObjectStore>,
    written: Written,
    refuse_deletes: bool,
}

impl fmt::Debug for WriteOnceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteOnceStore({})", self.inner)
    }
}

impl fmt::Display for WriteOnceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteOnceStore({})", self.inner)
    }
}

impl WriteOnceStore {
    /// Wraps `inner`; keys already in it count as written.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        WriteOnceStore {
            inner,
            written: Arc::default(),
            refuse_deletes: false,
        }
    }

    /// Also refuses every deletion, as an immutable bucket under retention does.
    pub fn refusing_deletes(mut self) -> Self {
        self.refuse_deletes = true;
        self
    }

    /// How many distinct keys were written through the wrapper.
    pub fn keys_written(&self) -> usize {
        lock(&self.written).len()
    }

    async fn claim(&self, location: &Path) -> Result<()> {
        let exists = match self.inner.head(location).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        claim(&self.written, location, exists)
    }
}

fn lock(written: &Written) -> std::sync::MutexGuard<'_, HashSet<Path>> {
    written.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records `location` as written, or fails if it was (or `exists` says it is) already.
fn claim(written: &Written, location: &Path, exists: bool) -> Result<()> {
    if !lock(written).insert(location.clone()) || exists {
        return Err(object_store::Error::AlreadyExists {
            path: location.to_string(),
            source: "write-once storage: this key was already written once and may not be \
                     written again"
                .into(),
        });
    }
    Ok(())
}

/// A multipart upload whose key was claimed when it started.
#[derive(Debug)]
struct Upload(Box<dyn MultipartUpload>);

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.0.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.0.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.0.abort().await
    }
}

#[async_trait]
impl ObjectStore for WriteOnceStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.claim(location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.claim(location).await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(Upload(upload)))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if self.refuse_deletes {
            return locations
                .map(|location| {
                    let path = location?;
                    Err(object_store::Error::PermissionDenied {
                        path: path.to_string(),
                        source: "immutable storage: objects cannot be deleted before their \
                                 retention period ends"
                            .into(),
                    })
                })
                .boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.claim(to).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_key_is_written_once_even_after_deletion() {
        let store = WriteOnceStore::new(Arc::new(InMemory::new()));
        let key = Path::from("backups/a/file");
        store
            .put(&key, PutPayload::from_static(b"one"))
            .await
            .unwrap();
        let e = store
            .put(&key, PutPayload::from_static(b"two"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already written once"), "{e}");
        store.delete(&key).await.unwrap();
        assert!(
            store
                .put(&key, PutPayload::from_static(b"three"))
                .await
                .is_err()
        );
        assert!(store.put_multipart(&key).await.is_err());
        assert_eq!(store.keys_written(), 1);
    }

    #[tokio::test]
    async fn keys_present_before_wrapping_count_as_written() {
        let inner = Arc::new(InMemory::new());
        let key = Path::from("x");
        inner
            .put(&key, PutPayload::from_static(b"old"))
            .await
            .unwrap();
        let store = WriteOnceStore::new(inner);
        assert!(
            store
                .put(&key, PutPayload::from_static(b"new"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_immutable_store_refuses_deletion_with_a_reason() {
        let store = WriteOnceStore::new(Arc::new(InMemory::new())).refusing_deletes();
        let key = Path::from("y");
        store
            .put(&key, PutPayload::from_static(b"kept"))
            .await
            .unwrap();
        let e = store.delete(&key).await.unwrap_err();
        assert!(
            matches!(e, object_store::Error::PermissionDenied { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("retention"), "{e}");
        assert!(store.head(&key).await.is_ok());
    }
}
