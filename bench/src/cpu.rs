//! CPU time the processes involved spent during a measured window, read from
//! `/proc/PID/stat`, to show which of them saturates the machine.

use std::time::{Duration, Instant};

use crate::procfs;

/// Whose CPU time is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    Process(u32),
    /// Every CPU of the machine, whatever runs on it.
    Machine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub label: &'static str,
    pub source: CpuSource,
}

/// CPU time one process (or the machine) used in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuShare {
    pub label: &'static str,
    pub cpu: Duration,
    /// `cpu / window`: 1.0 is one CPU kept busy for the whole window.
    pub cores: f64,
}

fn sample(processes: &[Watched]) -> Vec<Option<Duration>> {
    processes
        .iter()
        .map(|watched| match watched.source {
            CpuSource::Process(pid) => procfs::cpu_time(pid).ok(),
            CpuSource::Machine => procfs::machine_busy().ok(),
        })
        .collect()
}

/// CPU time each source spent between `from` and `to` (those that could not be read are
/// left out).
pub async fn watch(processes: Vec<Watched>, from: Instant, to: Instant) -> Vec<CpuShare> {
    tokio::time::sleep_until(from.into()).await;
    let started = Instant::now();
    let before = sample(&processes);
    tokio::time::sleep_until(to.into()).await;
    let after = sample(&processes);
    let window = started.elapsed().as_secs_f64();
    processes
        .iter()
        .zip(before.into_iter().zip(after))
        .filter_map(|(process, pair)| match pair {
            (Some(before), Some(after)) => {
                let cpu = after.saturating_sub(before);
                Some(CpuShare {
                    label: process.label,
                    cpu,
                    cores: if window > 0.0 {
                        cpu.as_secs_f64() / window
                    } else {
                        0.0
                    },
                })
            }
            _ => None,
        })
        .collect()
}
