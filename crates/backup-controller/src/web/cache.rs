//! What the dashboard keeps between requests, so that a read is answered from memory on every
//! replica instead of asking the management API and storage each time:
//!
//! - the project objects (locations, clusters, schedules) in reflector stores, kept current by
//!   watches;
//! - who a token belongs to and what RBAC answered, for a few seconds (the apiserver itself
//!   caches token reviews for ten), so a revoked token or a removed role binding stops working
//!   within seconds;
//! - each cluster's backups as storage lists them. Storage has no watch, so a listing is
//!   served while young, served and refreshed in the background when older, and listed again
//!   before answering when it is known to be out of date: when a run of that cluster changed
//!   phase or retention kept other backups (the schedules' status says so, and the controller
//!   writes that status only after storage holds the run), or when this replica deleted one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_core::StoredBackup;
use backup_storage::Manifest;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::auth::Caller;
use backup_api::{ClusterBackup, ClusterRestore, ManagedCluster, RestoreDrill, StorageLocation};
use backup_kube::locations::ResolvedLocation;

/// How long an accepted token and an RBAC answer are reused.
pub const AUTH_TTL: Duration = Duration::from_secs(5);
/// How long an opened location (its credentials read from the Secret) is reused.
pub const LOCATION_TTL: Duration = Duration::from_secs(30);
/// A listing younger than this is served as is.
pub const LISTING_FRESH: Duration = Duration::from_secs(10);
/// A listing older than this is listed again before answering (younger ones are served while
/// a refresh runs); also how long an unread listing is kept.
pub const LISTING_MAX_AGE: Duration = Duration::from_secs(600);
/// Entries of one map above which expired ones are swept on insert.
const SWEEP_ABOVE: usize = 4096;

/// Values kept for a while, each with when it was stored.
pub struct Expiring<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    max_age: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> Expiring<K, V> {
    /// An empty map whose entries expire after `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Expiring {
            entries: Mutex::default(),
            max_age,
        }
    }

    /// The value under `key` and its age, unless expired.
    pub fn get(&self, key: &K) -> Option<(Duration, V)> {
        let entries = self.lock();
        let (at, value) = entries.get(key)?;
        let age = at.elapsed();
        (age < self.max_age).then(|| (age, value.clone()))
    }

    /// Stores `value` under `key`, now.
    pub fn insert(&self, key: K, value: V) {
        let mut entries = self.lock();
        if entries.len() >= SWEEP_ABOVE {
            let max_age = self.max_age;
            entries.retain(|_, (at, _)| at.elapsed() < max_age);
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets the entries whose keys match.
    pub fn remove_where(&self, matches: impl Fn(&K) -> bool) {
        self.lock().retain(|k, _| !matches(k));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reflector stores of the project objects the dashboard shows.
#[derive(Clone)]
pub struct Objects {
    /// StorageLocations.
    pub locations: Store<StorageLocation>,
    /// ManagedClusters.
    pub clusters: Store<ManagedCluster>,
    /// ClusterBackups.
    pub backups: Store<ClusterBackup>,
    /// ClusterRestores.
    pub restores: Store<ClusterRestore>,
    /// RestoreDrills.
    pub drills: Store<RestoreDrill>,
}

impl Objects {
    /// The objects of `store` in `namespace`, by name.
    pub fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<Arc<K>>
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + Hash + Clone + Default,
    {
        let mut items: Vec<Arc<K>> = store
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .collect();
        items.sort_by_key(|o| o.name_any());
        items
    }

    /// What the schedules' status says about `cluster`'s runs: changes whenever one of its
    /// runs starts, changes phase or ends, and when retention keeps another set of backups.
    pub fn runs_fingerprint(&self, namespace: &str, cluster: &str) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for schedule in Self::in_namespace(&self.backups, namespace) {
            let Some(status) = &schedule.status else {
                continue;
            };
            for entry in status.clusters.iter().filter(|c| c.cluster == cluster) {
                schedule.name_any().hash(&mut hasher);
                if let Some(last) = &entry.last_backup {
                    (&last.name, last.phase.to_string()).hash(&mut hasher);
                }
                entry.backups.hash(&mut hasher);
            }
        }
        hasher.finish()
    }
}

/// What the dashboard shows of a backup's manifest. Only this is kept: whole manifests (their
/// attributes and every artifact's record) of a fleet's 10k backups were 90 MiB of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestSummary {
    /// The stored bytes of all its artifacts.
    pub size_bytes: u64,
    /// Whether its artifacts are encrypted.
    pub encrypted: bool,
}

impl ManifestSummary {
    /// The summary of `manifest`.
    pub fn of(manifest: &Manifest) -> Self {
        ManifestSummary {
            size_bytes: manifest.artifacts.iter().map(|a| a.size).sum(),
            encrypted: manifest.is_encrypted(),
        }
    }
}

/// A cluster's backups in one location, as one listing of storage found them.
pub struct Listing {
    /// Each backup with what its manifest says, oldest first.
    pub backups: Vec<(StoredBackup, ManifestSummary)>,
    /// [`Objects::runs_fingerprint`] when the listing began.
    fingerprint: u64,
}

/// Which listing: namespace, location name, cluster.
pub type ListingKey = (String, String, String);

/// Everything the dashboard caches.
pub struct WebCache {
    /// Accepted tokens by their SHA-256.
    pub tokens: Expiring<[u8; 32], Caller>,
    /// RBAC answers by the review they answered.
    pub decisions: Expiring<String, bool>,
    /// Opened locations by namespace and name (`None`: the default).
    pub locations: Expiring<(String, Option<String>), ResolvedLocation>,
    listings: Expiring<ListingKey, Arc<Listing>>,
    refreshing: Mutex<std::collections::HashSet<ListingKey>>,
}

impl Default for WebCache {
    fn default() -> Self {
        WebCache {
            tokens: Expiring::new(AUTH_TTL),
            decisions: Expiring::new(AUTH_TTL),
            locations: Expiring::new(LOCATION_TTL),
            listings: Expiring::new(LISTING_MAX_AGE),
            refreshing: Mutex::default(),
        }
    }
}

/// What to do about a listing request, given what is cached.
#[derive(Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh it in the background.
    Stale,
    /// List before answering.
    Missing,
}

/// Decides [`Freshness`] from the cached listing's age and fingerprint (pure).
pub fn freshness(cached: Option<(Duration, u64)>, fingerprint: u64) -> Freshness {
    match cached {
        None => Freshness::Missing,
        Some((_, was)) if was != fingerprint => Freshness::Missing,
        Some((age, _)) if age < LISTING_FRESH => Freshness::Fresh,
        Some(_) => Freshness::Stale,
    }
}

impl WebCache {
    /// The listing of `key`, listing storage with `list` when needed (see the module docs).
    pub async fn listing<F, Fut, E>(
        self: &Arc<Self>,
        key: ListingKey,
        fingerprint: u64,
        list: F,
    ) -> Result<Arc<Listing>, E>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Vec<(StoredBackup, Manifest)>, E>> + Send,
        E: std::fmt::Display + Send + 'static,
    {
        let cached = self.listings.get(&key);
        match freshness(
            cached.as_ref().map(|(age, l)| (*age, l.fingerprint)),
            fingerprint,
        ) {
            Freshness::Fresh => return Ok(cached.expect("fresh means cached").1),
            Freshness::Stale => {
                let cached = cached.expect("stale means cached").1;
                if self.start_refresh(&key) {
                    let cache = self.clone();
                    tokio::spawn(async move {
                        match list().await {
                            Ok(backups) => {
                                cache.store(key.clone(), backups, fingerprint);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "refreshing a backup listing failed")
                            }
                        }
                        cache.end_refresh(&key);
                    });
                }
                return Ok(cached);
            }
            Freshness::Missing => {}
        }
        let backups = list().await?;
        Ok(self.store(key, backups, fingerprint))
    }

    /// Forgets the listings of `cluster` in `namespace` (after this replica changed them).
    pub fn forget_listings(&self, namespace: &str, cluster: &str) {
        self.listings
            .remove_where(|(ns, _, c)| ns == namespace && c == cluster);
    }

    fn store(
        &self,
        key: ListingKey,
        backups: Vec<(StoredBackup, Manifest)>,
        fingerprint: u64,
    ) -> Arc<Listing> {
        let listing = Arc::new(Listing {
            backups: backups
                .into_iter()
                .map(|(backup, manifest)| (backup, ManifestSummary::of(&manifest)))
                .collect(),
            fingerprint,
        });
        self.listings.insert(key, listing.clone());
        listing
    }

    /// Whether this caller is the one to refresh `key` (one refresh at a time per listing).
    fn start_refresh(&self, key: &ListingKey) -> bool {
        self.refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone())
    }

    fn end_refresh(&self, key: &ListingKey) {
        self.refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_served_young_refreshed_when_older_and_relisted_when_known_stale() {
        let young = Duration::from_secs(1);
        let older = LISTING_FRESH + Duration::from_secs(1);
        assert_eq!(freshness(None, 7), Freshness::Missing);
        assert_eq!(freshness(Some((young, 7)), 7), Freshness::Fresh);
        assert_eq!(freshness(Some((older, 7)), 7), Freshness::Stale);
        // A run of the cluster changed phase since it was listed: list before answering.
        assert_eq!(freshness(Some((young, 7)), 8), Freshness::Missing);
        assert_eq!(freshness(Some((older, 7)), 8), Freshness::Missing);
    }

    #[test]
    fn expired_entries_are_not_returned_and_removal_is_by_key() {
        let map: Expiring<String, u32> = Expiring::new(Duration::from_millis(30));
        map.insert("a".into(), 1);
        map.insert("b".into(), 2);
        assert_eq!(map.get(&"a".into()).map(|(_, v)| v), Some(1));
        map.remove_where(|k| k == "a");
        assert_eq!(map.get(&"a".into()), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(map.get(&"b".into()), None, "expired");
    }

    #[tokio::test]
    async fn a_listing_is_listed_once_while_fresh_again_when_its_runs_changed_and_failure_is_an_error()
     {
        let cache = Arc::new(WebCache::default());
        let key: ListingKey = ("p".into(), "main".into(), "c1".into());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let list = {
            let calls = calls.clone();
            move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, String>(Vec::new())
                }
            }
        };
        cache.listing(key.clone(), 1, list.clone()).await.unwrap();
        cache.listing(key.clone(), 1, list.clone()).await.unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "fresh");
        // A changed fingerprint lists again before answering.
        let relisted = cache.listing(key.clone(), 2, list.clone()).await.unwrap();
        assert_eq!(relisted.fingerprint, 2);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A failing listing is an error, never an empty list.
        let failing = || async { Err::<Vec<(StoredBackup, Manifest)>, _>("storage down") };
        let other: ListingKey = ("p".into(), "main".into(), "c2".into());
        assert_eq!(
            cache.listing(other, 1, failing).await.err(),
            Some("storage down")
        );
    }
}
