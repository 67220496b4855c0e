//! Latency percentiles (nearest rank, over every sample: no histogram buckets).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// The sample at percentile `percent` of sorted samples (nearest-rank definition).
fn nearest_rank(sorted: &[Duration], percent: f64) -> Duration {
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl LatencySummary {
    /// Summarises the samples (sorting them); `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<LatencySummary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(LatencySummary {
            count: samples.len(),
            p50: nearest_rank(samples, 50.0),
            p90: nearest_rank(samples, 90.0),
            p99: nearest_rank(samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// `later - earlier` in milliseconds, negative when `later` is smaller.
pub fn difference_ms(later: Duration, earlier: Duration) -> f64 {
    later.as_secs_f64() * 1e3 - earlier.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let summary = LatencySummary::of(&mut samples).unwrap();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p90, Duration::from_millis(90));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
    }

    #[test]
    fn small_sets_and_empty_sets() {
        let mut one = vec![Duration::from_micros(7)];
        let summary = LatencySummary::of(&mut one).unwrap();
        assert_eq!(summary.p50, Duration::from_micros(7));
        assert_eq!(summary.p99, Duration::from_micros(7));
        assert!(LatencySummary::of(&mut []).is_none());
    }

    #[test]
    fn differences_are_signed_milliseconds() {
        let difference = difference_ms(Duration::from_micros(1500), Duration::from_micros(500));
        assert!((difference - 1.0).abs() < 1e-9);
        assert!(difference_ms(Duration::ZERO, Duration::from_millis(2)) < 0.0);
    }
}
