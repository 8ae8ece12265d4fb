//! What keeps one caller, or a flood of bad tokens, from taking the dashboard (and through it
//! the management cluster's API server) down:
//!
//! - at most [`MAX_IN_FLIGHT`] requests are served at once, and one that has no answer after
//!   [`REQUEST_TIMEOUT`] is answered 504 (streams are not held by either once they started);
//! - each credential (by its SHA-256) may make [`PER_CALLER`] requests per second, with bursts;
//! - a token the API server refused is refused again for [`REFUSED_FOR`] without asking, and
//!   the TokenReviews of tokens that turn out invalid share one small budget
//!   ([`FAILED_REVIEWS`]): a flood of made-up tokens costs a handful of TokenReviews, then
//!   429s, while tokens already accepted keep working;
//! - each user may hold [`STREAMS_PER_USER`] event streams, and all together
//!   [`STREAMS_IN_ALL`].
//!
//! The buckets are pure (time is passed in), so their rules are tested exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::WebState;
use super::cache::Expiring;
use super::error::ApiError;

/// Requests served at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long a request may take to be answered (a dry run's plan waits up to 60 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Requests per second of one credential, and its burst.
pub const PER_CALLER: Rate = Rate {
    per_second: 50.0,
    burst: 200.0,
};
/// TokenReviews of tokens that turn out invalid, for all callers together: ten, then one
/// every five seconds.
pub const FAILED_REVIEWS: Rate = Rate {
    per_second: 0.2,
    burst: 10.0,
};
/// How long a token once accepted passes the invalid tokens' budget (it is still reviewed
/// every [`AUTH_TTL`](super::cache::AUTH_TTL), so a revoked one stops working as before): a
/// flood of made-up tokens does not lock out who is signed in.
pub const VOUCHED_FOR: Duration = Duration::from_secs(3600);
/// How long a refused token is refused without asking again.
pub const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Event streams one user may hold open.
pub const STREAMS_PER_USER: usize = 20;
/// Event streams open in all.
pub const STREAMS_IN_ALL: usize = 1000;

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Tokens held at most (and at first).
    pub burst: f64,
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Bucket {
            rate,
            tokens: rate.burst,
            at: now,
        }
    }

    /// Whether a token is left at `now` (taking it), or how long until one is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.rate.per_second,
        ))
    }

    /// Whether a token is left at `now`, without taking it.
    pub fn has_one(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.at = now;
    }

    /// Whether it is full at `now` (and may be forgotten).
    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.rate.burst
    }
}

/// Per-credential buckets above this many are swept of full ones.
const SWEEP_ABOVE: usize = 4096;

/// The dashboard's limits and what they count.
pub struct Limits {
    in_flight: Arc<tokio::sync::Semaphore>,
    callers: Mutex<HashMap<[u8; 32], Bucket>>,
    failed_reviews: Mutex<Bucket>,
    /// Refused tokens (by SHA-256) and the API server's answer.
    pub refused: Expiring<[u8; 32], String>,
    /// Tokens (by SHA-256) the API server accepted within [`VOUCHED_FOR`].
    pub vouched: Expiring<[u8; 32], ()>,
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            callers: Mutex::default(),
            failed_reviews: Mutex::new(Bucket::new(FAILED_REVIEWS, Instant::now())),
            refused: Expiring::new(REFUSED_FOR),
            vouched: Expiring::new(VOUCHED_FOR),
            streams: Arc::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Limits {
    /// Counts a request of the credential whose SHA-256 is `key`: 429 when it is over its
    /// rate.
    pub fn admit_caller(&self, key: &[u8; 32]) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut callers = lock(&self.callers);
        if callers.len() >= SWEEP_ABOVE {
            callers.retain(|_, bucket| !bucket.full(now));
        }
        let bucket = callers
            .entry(*key)
            .or_insert_with(|| Bucket::new(PER_CALLER, now));
        bucket.take(now).map_err(|wait| {
            ApiError::too_many(
                format!(
                    "too many requests with this token ({} per second at most): slow down",
                    PER_CALLER.per_second
                ),
                wait,
            )
        })
    }

    /// Whether a token nobody has vouched for yet may be reviewed now: 429 while invalid
    /// tokens have used up their budget.
    pub fn may_review(&self) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut bucket = lock(&self.failed_reviews);
        if bucket.has_one(now) {
            return Ok(());
        }
        let wait = bucket.take(now).err().unwrap_or(Duration::from_secs(1));
        Err(ApiError::too_many(
            "too many sign-ins with invalid tokens just now; new tokens are checked again \
             shortly, tokens already signed in keep working",
            wait,
        ))
    }

    /// Counts a review whose token turned out invalid against the shared budget.
    pub fn review_failed(&self) {
        // Over budget already: nothing more to take.
        let _ = lock(&self.failed_reviews).take(Instant::now());
    }

    /// A place for one more event stream of `user`, held until the guard is dropped; 429 when
    /// the user, or everyone together, holds the most there may be.
    pub fn open_stream(&self, user: &str) -> Result<StreamGuard, ApiError> {
        let mut streams = lock(&self.streams);
        let everyone: usize = streams.values().sum();
        let theirs = streams.get(user).copied().unwrap_or(0);
        if theirs >= STREAMS_PER_USER {
            return Err(ApiError::too_many(
                format!(
                    "{user} already follows {theirs} event streams, the most one user may: \
                     close some (each open dashboard page holds one)"
                ),
                Duration::from_secs(10),
            ));
        }
        if everyone >= STREAMS_IN_ALL {
            return Err(ApiError::too_many(
                format!("the dashboard serves {everyone} event streams, its most: try later"),
                Duration::from_secs(10),
            ));
        }
        *streams.entry(user.to_string()).or_default() += 1;
        Ok(StreamGuard {
            streams: self.streams.clone(),
            user: user.to_string(),
        })
    }
}

/// One open event stream, counted until dropped.
pub struct StreamGuard {
    streams: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = lock(&self.streams);
        if let Some(count) = streams.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

/// Serves `request` within the in-flight limit and the timeout.
pub async fn within_limits(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = state.limits.in_flight.clone().try_acquire_owned() else {
        state.metrics.api_limited("in_flight");
        return ApiError::unavailable(format!(
            "the dashboard is answering {MAX_IN_FLIGHT} requests already: try again shortly"
        ))
        .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.api_limited("timeout");
            ApiError::timeout(format!(
                "no answer within {REQUEST_TIMEOUT:?}: the management cluster or storage is slow; \
             try again"
            ))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 2.0,
        burst: 3.0,
    };

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(RATE, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(Duration::from_millis(500)));
        let later = start + Duration::from_millis(500);
        assert_eq!(bucket.take(later), Ok(()));
        assert_eq!(bucket.take(later), Err(Duration::from_millis(500)));
        // An idle hour refills to the burst, not beyond.
        let hour = later + Duration::from_secs(3600);
        assert!(bucket.full(hour));
        for _ in 0..3 {
            assert_eq!(bucket.take(hour), Ok(()));
        }
        assert!(bucket.take(hour).is_err());
    }

    #[test]
    fn invalid_tokens_share_one_small_budget() {
        let limits = Limits::default();
        let burst = FAILED_REVIEWS.burst as usize;
        for _ in 0..burst {
            assert!(limits.may_review().is_ok());
            limits.review_failed();
        }
        let refused = limits.may_review().unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused.message.contains("keep working"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_caller_over_its_rate_is_told_to_slow_down_and_others_are_not() {
        let limits = Limits::default();
        let (noisy, quiet) = ([1u8; 32], [2u8; 32]);
        for _ in 0..PER_CALLER.burst as usize {
            assert!(limits.admit_caller(&noisy).is_ok());
        }
        let refused = limits.admit_caller(&noisy).unwrap_err();
        assert!(refused.message.contains("slow down"), "{}", refused.message);
        assert!(limits.admit_caller(&quiet).is_ok());
    }

    #[test]
    fn streams_are_capped_per_user_and_freed_when_they_end() {
        let limits = Limits::default();
        let held: Vec<StreamGuard> = (0..STREAMS_PER_USER)
            .map(|_| limits.open_stream("alice").unwrap())
            .collect();
        let refused = limits.open_stream("alice").err().unwrap();
        assert!(
            refused
                .message
                .contains("alice already follows 20 event streams"),
            "{}",
            refused.message
        );
        assert!(limits.open_stream("bob").is_ok());
        drop(held);
        assert!(limits.open_stream("alice").is_ok());
    }
}
