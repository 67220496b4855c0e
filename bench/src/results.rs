//! Everything one run measured, as the report needs it.

use std::time::Duration;

use crate::first_token::FirstTokenOutcome;
use crate::held_streams::HoldOutcome;
use crate::load::LoadOutcome;
use crate::procfs::MemoryReading;

/// Both paths at one offered rate.
#[derive(Debug, Clone)]
pub struct OpenLoopRun {
    pub rate: f64,
    pub direct: LoadOutcome,
    pub gateway: LoadOutcome,
}

#[derive(Debug, Clone)]
pub struct UnaryResults {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// In the order the rates were given; the first is the one the target is judged at.
    pub open_runs: Vec<OpenLoopRun>,
    pub closed_connections: usize,
    pub closed_duration: Duration,
    pub closed_direct: LoadOutcome,
    pub closed_gateway: LoadOutcome,
    /// The open-loop run of requests with tools and an image.
    pub mix: Option<OpenLoopRun>,
}

#[derive(Debug, Clone)]
pub struct FirstTokenResults {
    pub concurrency: usize,
    pub duration: Duration,
    pub direct: FirstTokenOutcome,
    pub gateway: FirstTokenOutcome,
}

/// One level of concurrent streams.
#[derive(Debug, Clone)]
pub struct LevelResult {
    /// The level asked for.
    pub requested: usize,
    /// Why fewer streams were opened, when they were.
    pub capped_because: Option<String>,
    pub outcome: HoldOutcome,
}

#[derive(Debug, Clone)]
pub struct MemoryResults {
    pub prompt: String,
    pub open_rate: f64,
    pub idle: Option<MemoryReading>,
    pub idle_open_files: Option<usize>,
    pub levels: Vec<LevelResult>,
}

impl MemoryResults {
    /// Resident memory each additional stream costs, in KiB, between the last two levels.
    pub fn marginal_kib_per_stream(&self) -> Option<f64> {
        let [.., lower, upper] = self.levels.as_slice() else {
            return None;
        };
        let lower_rss = lower.outcome.memory?.rss_kib as f64;
        let upper_rss = upper.outcome.memory?.rss_kib as f64;
        let added = upper.outcome.open_at_reading as f64 - lower.outcome.open_at_reading as f64;
        (added > 0.0).then(|| (upper_rss - lower_rss) / added)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub unary: Option<UnaryResults>,
    pub first_token: Option<FirstTokenResults>,
    pub memory: Option<MemoryResults>,
}
