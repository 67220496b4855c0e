//! Per-API-key limits: requests per minute and concurrent streams.
//!
//! Keys are known here only by the digest authentication computed
//! ([`KeyId`]), never by the key itself. Time is passed in, so every rule is
//! a pure function of the calls made.
//!
//! **Requests per minute** is a token bucket of `N` tokens refilled at `N`
//! per minute: a key that has been idle may send a burst of `N` requests,
//! after which one request is admitted every `60/N` seconds. It is kept in
//! its "virtual scheduling" form (GCRA): instead of a token count, the bucket
//! stores the instant at which it would be full again, so admitting,
//! refusing and computing the wait need no floating point and no timer. A
//! refused request takes no token, so retrying early does not push the wait
//! further out.
//!
//! **Concurrent streams** is a count of open streams per key; a
//! [`StreamSlot`] holds one and gives it back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::auth::KeyId;

const MINUTE: Duration = Duration::from_secs(60);

/// Beyond this many tracked keys, keys at rest (a full bucket and no open
/// stream, indistinguishable from a key never seen) are forgotten. Only
/// authenticated keys are tracked, so this bounds memory across rotations.
const PRUNE_ABOVE: usize = 256;

/// The configured limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub concurrent_streams: Option<u32>,
    /// What a client refused a stream slot is told to wait: when a slot
    /// frees up cannot be known in advance.
    pub stream_retry_after: Duration,
}

impl KeyLimits {
    /// Limits from flag values, where 0 means unlimited.
    pub fn from_flags(
        requests_per_minute: u32,
        concurrent_streams: u32,
        stream_retry_after: Duration,
    ) -> Self {
        Self {
            requests_per_minute: (requests_per_minute > 0).then_some(requests_per_minute),
            concurrent_streams: (concurrent_streams > 0).then_some(concurrent_streams),
            stream_retry_after,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.concurrent_streams.is_none()
    }
}

/// Why a request was refused, and how long the client should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    RequestsPerMinute { limit: u32, retry_after: Duration },
    ConcurrentStreams { limit: u32, retry_after: Duration },
}

impl Refusal {
    /// The `limit` label of the rejection metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Refusal::RequestsPerMinute { .. } => "requests_per_minute",
            Refusal::ConcurrentStreams { .. } => "concurrent_streams",
        }
    }

    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::RequestsPerMinute { retry_after, .. }
            | Refusal::ConcurrentStreams { retry_after, .. } => *retry_after,
        }
    }

    /// Whole seconds for `Retry-After`, rounded up so that a client waiting
    /// that long is never refused again for the same reason, and at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        let wait = self.retry_after();
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        seconds.max(1)
    }

    /// Milliseconds for `retry-after-ms`, rounded up, at least 1.
    pub fn retry_after_millis(&self) -> u64 {
        let wait = self.retry_after();
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let rounded_up =
            millis.saturating_add(u64::from(!wait.subsec_nanos().is_multiple_of(1_000_000)));
        rounded_up.max(1)
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::RequestsPerMinute { limit, .. } => format!(
                "Rate limit reached for this API key on requests per minute: limit {limit}. Please try again in {}s.",
                self.retry_after_seconds()
            ),
            Refusal::ConcurrentStreams { limit, .. } => format!(
                "Rate limit reached for this API key on concurrent streams: limit {limit}. Please try again when one of its streams has ended."
            ),
        }
    }
}

/// A requests-per-minute bucket; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBucket {
    /// Time one token takes to come back: a minute divided by the limit.
    interval: Duration,
    /// How far ahead of now the bucket may run: `(limit - 1) * interval`.
    burst: Duration,
    /// When the bucket is full again; in the past (or now) when it is full.
    full_at: Instant,
}

impl RequestBucket {
    /// A full bucket of `per_minute` tokens (at least 1).
    pub fn new(per_minute: u32, now: Instant) -> Self {
        let per_minute = per_minute.max(1);
        let interval = MINUTE / per_minute;
        Self {
            interval,
            burst: interval * (per_minute - 1),
            full_at: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let owed = self.full_at.saturating_duration_since(now);
        if owed > self.burst {
            return Err(owed - self.burst);
        }
        self.full_at = now.max(self.full_at) + self.interval;
        Ok(())
    }

    /// Tokens left at `now`.
    pub fn available(&self, now: Instant) -> u32 {
        let owed = self.full_at.saturating_duration_since(now);
        let capacity = self.burst.as_nanos() / self.interval.as_nanos().max(1) + 1;
        let taken = owed.as_nanos().div_ceil(self.interval.as_nanos().max(1));
        u32::try_from(capacity.saturating_sub(taken)).unwrap_or(u32::MAX)
    }

    pub fn is_full(&self, now: Instant) -> bool {
        self.full_at <= now
    }
}

#[derive(Debug)]
struct KeyUsage {
    bucket: Option<RequestBucket>,
    open_streams: u32,
}

impl KeyUsage {
    fn at_rest(&self, now: Instant) -> bool {
        self.open_streams == 0 && self.bucket.is_none_or(|bucket| bucket.is_full(now))
    }
}

/// The limits of every key, shared by all workers.
#[derive(Debug)]
pub struct KeyLimiter {
    limits: KeyLimits,
    prune_above: usize,
    usage: Mutex<HashMap<KeyId, KeyUsage>>,
}

impl KeyLimiter {
    /// `None` when no limit is configured, so that the unlimited case costs nothing.
    pub fn new(limits: KeyLimits) -> Option<Arc<Self>> {
        (!limits.is_unlimited()).then(|| Self::with_pruning(limits, PRUNE_ABOVE))
    }

    fn with_pruning(limits: KeyLimits, prune_above: usize) -> Arc<Self> {
        Arc::new(Self {
            limits,
            prune_above,
            usage: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> KeyLimits {
        self.limits
    }

    fn usage(&self) -> MutexGuard<'_, HashMap<KeyId, KeyUsage>> {
        // The map stays consistent even if a holder panicked: every update is a
        // single assignment.
        self.usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn entry<'a>(
        &self,
        usage: &'a mut HashMap<KeyId, KeyUsage>,
        key: KeyId,
        now: Instant,
    ) -> &'a mut KeyUsage {
        if !usage.contains_key(&key) && usage.len() >= self.prune_above {
            usage.retain(|_, tracked| !tracked.at_rest(now));
        }
        usage.entry(key).or_insert_with(|| KeyUsage {
            bucket: self
                .limits
                .requests_per_minute
                .map(|per_minute| RequestBucket::new(per_minute, now)),
            open_streams: 0,
        })
    }

    /// Counts a request against the key's requests per minute.
    pub fn admit_request(&self, key: KeyId, now: Instant) -> Result<(), Refusal> {
        let Some(limit) = self.limits.requests_per_minute else {
            return Ok(());
        };
        let mut usage = self.usage();
        let tracked = self.entry(&mut usage, key, now);
        match tracked.bucket.as_mut() {
            Some(bucket) => bucket
                .try_take(now)
                .map_err(|retry_after| Refusal::RequestsPerMinute { limit, retry_after }),
            None => Ok(()),
        }
    }

    /// Takes one of the key's stream slots; it is given back when the slot is dropped.
    pub fn claim_stream(self: &Arc<Self>, key: KeyId, now: Instant) -> Result<StreamSlot, Refusal> {
        let Some(limit) = self.limits.concurrent_streams else {
            return Ok(StreamSlot { held: None });
        };
        let mut usage = self.usage();
        let tracked = self.entry(&mut usage, key, now);
        if tracked.open_streams >= limit {
            return Err(Refusal::ConcurrentStreams {
                limit,
                retry_after: self.limits.stream_retry_after,
            });
        }
        tracked.open_streams += 1;
        Ok(StreamSlot {
            held: Some((Arc::clone(self), key)),
        })
    }

    /// Streams the key has open.
    pub fn open_streams(&self, key: KeyId) -> u32 {
        self.usage()
            .get(&key)
            .map_or(0, |tracked| tracked.open_streams)
    }

    /// Keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.usage().len()
    }

    fn release_stream(&self, key: KeyId) {
        if let Some(tracked) = self.usage().get_mut(&key) {
            tracked.open_streams = tracked.open_streams.saturating_sub(1);
        }
    }
}

/// One open stream of a key; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    held: Option<(Arc<KeyLimiter>, KeyId)>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some((limiter, key)) = self.held.take() {
            limiter.release_stream(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> KeyId {
        KeyId::from_digest([byte; 32])
    }

    fn limits(per_minute: u32, streams: u32) -> KeyLimits {
        KeyLimits::from_flags(per_minute, streams, Duration::from_secs(2))
    }

    fn limiter(per_minute: u32, streams: u32) -> Arc<KeyLimiter> {
        KeyLimiter::new(limits(per_minute, streams)).expect("a limit is set")
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn zero_flags_mean_no_limiter_at_all() {
        assert!(limits(0, 0).is_unlimited());
        assert!(KeyLimiter::new(limits(0, 0)).is_none());
        assert_eq!(limits(5, 0).requests_per_minute, Some(5));
        assert_eq!(limits(5, 0).concurrent_streams, None);
        assert_eq!(limits(0, 3).concurrent_streams, Some(3));
    }

    #[test]
    fn a_full_bucket_admits_a_burst_of_its_size_then_refuses() {
        let start = Instant::now();
        let mut bucket = RequestBucket::new(60, start);
        assert_eq!(bucket.available(start), 60);
        for admitted in 0..60 {
            assert_eq!(bucket.try_take(start), Ok(()), "request {admitted}");
        }
        assert_eq!(bucket.available(start), 0);
        assert_eq!(bucket.try_take(start), Err(SECOND));
    }

    #[test]
    fn the_wait_is_exact_and_refusals_take_no_token() {
        let start = Instant::now();
        let mut bucket = RequestBucket::new(60, start);
        for _ in 0..60 {
            bucket.try_take(start).unwrap();
        }
        let later = start + Duration::from_millis(250);
        assert_eq!(bucket.try_take(later), Err(Duration::from_millis(750)));
        assert_eq!(bucket.try_take(later), Err(Duration::from_millis(750)));
        let just_before = start + Duration::from_millis(999);
        assert_eq!(bucket.try_take(just_before), Err(Duration::from_millis(1)));
        assert_eq!(bucket.try_take(start + SECOND), Ok(()));
        assert_eq!(bucket.try_take(start + SECOND), Err(SECOND));
    }

    #[test]
    fn sustained_rate_is_the_limit_per_minute() {
        let start = Instant::now();
        let mut bucket = RequestBucket::new(30, start);
        let mut admitted = 0;
        // One attempt every 100 ms for three minutes after the burst.
        for tenth in 0..=1800 {
            if bucket
                .try_take(start + Duration::from_millis(100) * tenth)
                .is_ok()
            {
                admitted += 1;
            }
        }
        // The burst of 30, then one every 2 s for 180 s.
        assert_eq!(admitted, 30 + 90);
    }

    #[test]
    fn an_idle_bucket_refills_but_never_beyond_its_size() {
        let start = Instant::now();
        let mut bucket = RequestBucket::new(6, start);
        for _ in 0..6 {
            bucket.try_take(start).unwrap();
        }
        assert!(!bucket.is_full(start));
        // 10 s per token: after 25 s two tokens are back.
        let later = start + Duration::from_secs(25);
        assert_eq!(bucket.available(later), 2);
        assert_eq!(bucket.try_take(later), Ok(()));
        assert_eq!(bucket.try_take(later), Ok(()));
        assert_eq!(bucket.try_take(later), Err(Duration::from_secs(5)));
        let much_later = start + Duration::from_secs(3600);
        assert!(bucket.is_full(much_later));
        assert_eq!(bucket.available(much_later), 6);
        for _ in 0..6 {
            bucket.try_take(much_later).unwrap();
        }
        assert!(bucket.try_take(much_later).is_err());
    }

    #[test]
    fn a_limit_of_one_and_odd_limits_work() {
        let start = Instant::now();
        let mut one = RequestBucket::new(1, start);
        assert_eq!(one.try_take(start), Ok(()));
        assert_eq!(one.try_take(start), Err(MINUTE));
        assert_eq!(one.try_take(start + MINUTE), Ok(()));
        let mut zero = RequestBucket::new(0, start);
        assert_eq!(zero.try_take(start), Ok(()), "0 is read as 1");
        assert!(zero.try_take(start).is_err());
        let mut seven = RequestBucket::new(7, start);
        for _ in 0..7 {
            seven.try_take(start).unwrap();
        }
        let wait = seven.try_take(start).unwrap_err();
        assert_eq!(wait, MINUTE / 7);
    }

    #[test]
    fn a_clock_that_reads_earlier_is_harmless() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = RequestBucket::new(2, start);
        bucket.try_take(start).unwrap();
        let earlier = start - Duration::from_secs(5);
        assert_eq!(bucket.try_take(earlier), Err(Duration::from_secs(5)));
        bucket.try_take(start).unwrap();
        assert!(bucket.try_take(start).is_err());
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limiter = limiter(2, 0);
        let now = Instant::now();
        assert!(limiter.admit_request(key(1), now).is_ok());
        assert!(limiter.admit_request(key(1), now).is_ok());
        assert_eq!(
            limiter.admit_request(key(1), now),
            Err(Refusal::RequestsPerMinute {
                limit: 2,
                retry_after: Duration::from_secs(30)
            })
        );
        assert!(limiter.admit_request(key(2), now).is_ok());
        assert!(limiter.admit_request(key(2), now).is_ok());
        assert!(limiter.admit_request(key(2), now).is_err());
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn without_a_request_limit_requests_pass_and_nothing_is_tracked() {
        let limiter = limiter(0, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.admit_request(key(1), now).is_ok());
        }
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn stream_slots_are_counted_per_key_and_given_back_on_drop() {
        let limiter = limiter(0, 2);
        let now = Instant::now();
        let first = limiter.claim_stream(key(1), now).unwrap();
        let second = limiter.claim_stream(key(1), now).unwrap();
        assert_eq!(limiter.open_streams(key(1)), 2);
        assert_eq!(
            limiter.claim_stream(key(1), now).unwrap_err(),
            Refusal::ConcurrentStreams {
                limit: 2,
                retry_after: Duration::from_secs(2)
            }
        );
        let other = limiter.claim_stream(key(2), now).unwrap();
        drop(first);
        assert_eq!(limiter.open_streams(key(1)), 1);
        let third = limiter.claim_stream(key(1), now).unwrap();
        assert_eq!(limiter.open_streams(key(1)), 2);
        drop((second, third, other));
        assert_eq!(limiter.open_streams(key(1)), 0);
        assert_eq!(limiter.open_streams(key(2)), 0);
    }

    #[test]
    fn without_a_stream_limit_slots_are_free_and_untracked() {
        let limiter = limiter(10, 0);
        let now = Instant::now();
        let slots: Vec<StreamSlot> = (0..100)
            .map(|_| limiter.claim_stream(key(1), now).unwrap())
            .collect();
        assert_eq!(limiter.open_streams(key(1)), 0);
        assert_eq!(limiter.tracked_keys(), 0);
        drop(slots);
    }

    #[test]
    fn both_limits_apply_independently() {
        let limiter = limiter(3, 1);
        let now = Instant::now();
        limiter.admit_request(key(1), now).unwrap();
        let slot = limiter.claim_stream(key(1), now).unwrap();
        limiter.admit_request(key(1), now).unwrap();
        assert_eq!(
            limiter
                .claim_stream(key(1), now)
                .unwrap_err()
                .metric_label(),
            "concurrent_streams"
        );
        limiter.admit_request(key(1), now).unwrap();
        assert_eq!(
            limiter
                .admit_request(key(1), now)
                .unwrap_err()
                .metric_label(),
            "requests_per_minute"
        );
        drop(slot);
        assert!(limiter.claim_stream(key(1), now).is_ok());
    }

    #[test]
    fn keys_at_rest_are_forgotten_beyond_the_threshold_but_busy_ones_are_kept() {
        let limiter = KeyLimiter::with_pruning(limits(1, 1), 3);
        let now = Instant::now();
        limiter.admit_request(key(1), now).unwrap();
        let busy = limiter.claim_stream(key(2), now).unwrap();
        limiter.admit_request(key(3), now).unwrap();
        assert_eq!(limiter.tracked_keys(), 3);
        // A minute on, key 1 and key 3 have full buckets again; key 2 streams.
        let later = now + MINUTE;
        limiter.admit_request(key(4), later).unwrap();
        assert_eq!(limiter.tracked_keys(), 2, "keys 2 and 4 remain");
        assert_eq!(limiter.open_streams(key(2)), 1);
        assert!(limiter.claim_stream(key(2), later).is_err());
        drop(busy);
        assert_eq!(limiter.open_streams(key(2)), 0);
        // A key forgotten at rest starts again with a full bucket.
        assert!(limiter.admit_request(key(1), later).is_ok());
    }

    #[test]
    fn a_slot_released_after_its_key_was_forgotten_is_harmless() {
        let limiter = KeyLimiter::with_pruning(limits(0, 1), 1);
        let now = Instant::now();
        let slot = limiter.claim_stream(key(1), now).unwrap();
        drop(slot);
        let _other = limiter.claim_stream(key(2), now).unwrap();
        assert_eq!(limiter.tracked_keys(), 1, "key 1 was at rest and forgotten");
        assert_eq!(limiter.open_streams(key(1)), 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_milliseconds() {
        let refusal = |retry_after| Refusal::RequestsPerMinute {
            limit: 1,
            retry_after,
        };
        assert_eq!(refusal(Duration::from_millis(1)).retry_after_seconds(), 1);
        assert_eq!(refusal(Duration::from_millis(1)).retry_after_millis(), 1);
        assert_eq!(refusal(Duration::from_secs(2)).retry_after_seconds(), 2);
        assert_eq!(refusal(Duration::from_secs(2)).retry_after_millis(), 2000);
        assert_eq!(
            refusal(Duration::from_millis(2001)).retry_after_seconds(),
            3
        );
        assert_eq!(
            refusal(Duration::from_nanos(1_500_001)).retry_after_millis(),
            2
        );
        assert_eq!(refusal(Duration::ZERO).retry_after_seconds(), 1);
        assert_eq!(refusal(Duration::ZERO).retry_after_millis(), 1);
        assert_eq!(refusal(MINUTE / 7).retry_after_seconds(), 9);
        assert_eq!(refusal(MINUTE / 7).retry_after_millis(), 8572);
    }

    #[test]
    fn messages_name_the_limit_and_never_the_key() {
        let per_minute = Refusal::RequestsPerMinute {
            limit: 60,
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            per_minute.message(),
            "Rate limit reached for this API key on requests per minute: limit 60. Please try again in 2s."
        );
        let streams = Refusal::ConcurrentStreams {
            limit: 4,
            retry_after: Duration::from_secs(2),
        };
        assert!(streams.message().contains("concurrent streams: limit 4"));
        assert_eq!(streams.retry_after_seconds(), 2);
    }

    #[test]
    fn slots_are_safe_across_threads() {
        let limiter = limiter(0, 8);
        let now = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if let Ok(slot) = limiter.claim_stream(key(1), now) {
                            assert!(limiter.open_streams(key(1)) <= 8);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(limiter.open_streams(key(1)), 0);
    }
}
