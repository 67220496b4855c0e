//! What a group of workers observed: latencies, failures and when the last reply came.

use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::stats::LatencySummary;

#[derive(Debug, Default)]
pub struct Tally {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub last_completion: Option<Instant>,
}

impl Tally {
    pub fn success(&mut self, latency: Duration, completed_at: Instant) {
        self.latencies.push(latency);
        self.completed(completed_at);
    }

    pub fn failure(&mut self, error: &BenchError, completed_at: Instant) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
        self.completed(completed_at);
    }

    fn completed(&mut self, at: Instant) {
        self.last_completion = Some(self.last_completion.map_or(at, |last| last.max(at)));
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if let Some(at) = other.last_completion {
            self.completed(at);
        }
    }

    pub fn successes(&self) -> usize {
        self.latencies.len()
    }

    /// Successful replies per second over the measured window, which lasts at least
    /// `planned` and longer when replies kept arriving after it.
    pub fn rate(&self, window_start: Instant, planned: Duration) -> f64 {
        let observed = self.last_completion.map_or(Duration::ZERO, |last| {
            last.saturating_duration_since(window_start)
        });
        let window = observed.max(planned).as_secs_f64();
        if window > 0.0 {
            self.successes() as f64 / window
        } else {
            0.0
        }
    }

    pub fn summary(&mut self) -> Option<LatencySummary> {
        LatencySummary::of(&mut self.latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_tallies_keep_the_first_error_and_the_latest_completion() {
        let start = Instant::now();
        let mut first = Tally::default();
        first.success(Duration::from_millis(1), start + Duration::from_secs(1));
        let mut second = Tally::default();
        second.failure(
            &BenchError::Reply("broken".into()),
            start + Duration::from_secs(3),
        );
        second.success(Duration::from_millis(2), start + Duration::from_secs(2));
        first.merge(second);
        assert_eq!(first.successes(), 2);
        assert_eq!(first.errors, 1);
        assert_eq!(
            first.first_error.as_deref(),
            Some("malformed reply: broken")
        );
        assert_eq!(first.last_completion, Some(start + Duration::from_secs(3)));
        // Two replies over a window stretched from the planned 2 s to the observed 3 s.
        assert!((first.rate(start, Duration::from_secs(2)) - 2.0 / 3.0).abs() < 1e-9);
    }
}
