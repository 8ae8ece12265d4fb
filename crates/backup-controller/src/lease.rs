//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles.
//!
//! The rules are client-go's, kept small enough to read in one go:
//! - The holder renews every `renew_every`; every write carries the resourceVersion it read, so
//!   of two replicas racing for the Lease exactly one wins (the other gets 409 Conflict).
//! - A replica takes over only when the Lease record has not changed for `duration` as *it*
//!   observed the record (local monotonic time), so clock skew between nodes cannot make it
//!   take a Lease early.
//! - The holder steps down by itself as soon as `duration - margin` has passed since its last
//!   successful renewal, whatever the API says or fails to say: a partitioned leader stops
//!   reconciling before anyone else may start.
//! - On shutdown the holder releases the Lease (empties `holderIdentity`), so a successor need
//!   not wait for it to expire.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// How the election runs.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a Lease stays valid after its last renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a non-holder looks at the Lease.
    pub retry_every: Duration,
    /// How long before its own Lease would expire the holder steps down unrenewed.
    pub margin: Duration,
}

impl LeaseConfig {
    /// Defaults that hand over within about 13 s of a leader's death (a 12 s lease, looked at
    /// every second), while the holder renews every 4 s and steps down 2 s before its lease
    /// could expire, so two failed renewals in a row still leave it leading.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            name: "backup-fleet-controller".into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(12),
            renew_every: Duration::from_secs(4),
            retry_every: Duration::from_secs(1),
            margin: Duration::from_secs(2),
        }
    }
}

/// The record a replica last saw and when it saw it change.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    resource_version: Option<String>,
}

/// What a replica should do after looking at the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the Lease with us as holder (renew, take over, or claim a free one).
    Claim,
    /// Someone else validly holds it: wait.
    Wait,
}

/// The pure decision: claim when the Lease is ours, free, or unchanged for `duration` since
/// we first saw this record.
pub fn decide(
    identity: &str,
    holder: Option<&str>,
    unchanged_for: Duration,
    duration: Duration,
) -> Step {
    match holder {
        None | Some("") => Step::Claim,
        Some(h) if h == identity => Step::Claim,
        Some(_) if unchanged_for >= duration => Step::Claim,
        Some(_) => Step::Wait,
    }
}

/// Runs the election until `shutdown` resolves, publishing whether we lead on `leading`.
/// Returns after releasing the Lease if we held it.
pub async fn run(
    client: kube::Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut seen: Option<(Observed, Instant)> = None;
    let mut last_renewal: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let now = Instant::now();
        // Step down first, whatever happens below: an unrenewed lease may be taken soon.
        if let Some(renewed) = last_renewal
            && now.duration_since(renewed) >= config.duration.saturating_sub(config.margin)
        {
            tracing::warn!(
                identity = %config.identity,
                "could not renew the lease in time; stepping down"
            );
            last_renewal = None;
            leading.send_replace(false);
        }
        // No attempt may outlast the moment this replica must have stepped down.
        let step_down_at = last_renewal.map(|r| r + config.duration.saturating_sub(config.margin));
        let budget = step_down_at
            .map_or(config.renew_every, |d| d.saturating_duration_since(now))
            .min(config.renew_every);
        let attempt =
            match tokio::time::timeout(budget, try_once(&api, &config, &mut seen, now)).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("lease: the API did not answer within {budget:?}");
                    tokio::time::sleep_until(now + budget).await;
                    continue;
                }
            };
        match attempt {
            Ok(true) => {
                if last_renewal.is_none() {
                    tracing::info!(identity = %config.identity, lease = %config.name, "leading");
                }
                last_renewal = Some(now);
                leading.send_replace(true);
            }
            Ok(false) => {
                if last_renewal.take().is_some() {
                    tracing::warn!(identity = %config.identity, "lost the lease to another replica");
                }
                leading.send_replace(false);
            }
            Err(e) => tracing::warn!(error = %e, "lease: the API call failed; retrying"),
        }
        let wait = if last_renewal.is_some() {
            config.renew_every
        } else {
            config.retry_every
        };
        let deadline = last_renewal
            .map(|r| r + config.duration.saturating_sub(config.margin))
            .map_or(now + wait, |d| d.min(now + wait));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    if last_renewal.is_some() {
        leading.send_replace(false);
        if let Err(e) = release(&api, &config).await {
            tracing::warn!(error = %e, "releasing the lease failed; it expires by itself");
        }
    }
}

/// Reads the Lease and claims it when [`decide`] says so. `Ok(true)` when we hold it after
/// this step.
async fn try_once(
    api: &Api<Lease>,
    config: &LeaseConfig,
    seen: &mut Option<(Observed, Instant)>,
    now: Instant,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let Some(lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(claimed(config, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let observed = Observed {
        holder: spec.holder_identity.clone(),
        renew_time: spec.renew_time.as_ref().map(|t| t.0),
        resource_version: lease.metadata.resource_version.clone(),
    };
    let since = match seen {
        Some((previous, at)) if *previous == observed => *at,
        _ => now,
    };
    *seen = Some((observed.clone(), since));
    match decide(
        &config.identity,
        observed.holder.as_deref(),
        now.duration_since(since),
        config.duration,
    ) {
        Step::Wait => Ok(false),
        Step::Claim => {
            let mut updated = lease.clone();
            updated.spec = Some(claimed(config, Some(&spec)));
            match api
                .replace(&config.name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => Ok(true),
                // Someone else wrote first: they hold it now.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// The spec with us as holder, renewed now; transitions counted when the holder changes.
fn claimed(config: &LeaseConfig, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(&config.identity);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.duration.as_secs() as i32),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Empties `holderIdentity` if we still hold the Lease.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(&config.identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.renew_time = None;
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(12);

    #[test]
    fn a_free_or_own_lease_is_claimed() {
        assert_eq!(decide("a", None, Duration::ZERO, D), Step::Claim);
        assert_eq!(decide("a", Some(""), Duration::ZERO, D), Step::Claim);
        assert_eq!(decide("a", Some("a"), Duration::ZERO, D), Step::Claim);
    }

    #[test]
    fn another_holder_is_waited_for_until_its_record_stood_still_for_the_duration() {
        assert_eq!(
            decide("a", Some("b"), Duration::from_secs(11), D),
            Step::Wait
        );
        assert_eq!(decide("a", Some("b"), D, D), Step::Claim);
    }

    #[test]
    fn claiming_counts_transitions_only_when_the_holder_changes() {
        let config = LeaseConfig::new("ns", "a");
        let first = claimed(&config, None);
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        let renewed = claimed(&config, Some(&first));
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        let other = LeaseConfig::new("ns", "b");
        let taken = claimed(&other, Some(&renewed));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.lease_duration_seconds, Some(12));
    }
}
