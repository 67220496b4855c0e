//! Reading another process's memory and file-descriptor figures from `/proc`.

use std::time::Duration;

use crate::error::{BenchError, Result};

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most that was ever resident.
    pub peak_rss_kib: u64,
}

fn read(path: String) -> Result<String> {
    std::fs::read_to_string(&path).map_err(|source| BenchError::Proc { path, source })
}

fn kib_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Reads `VmRSS` and `VmHWM` from the text of `/proc/PID/status`.
pub fn parse_status(status: &str) -> Option<MemoryReading> {
    Some(MemoryReading {
        rss_kib: kib_field(status, "VmRSS")?,
        peak_rss_kib: kib_field(status, "VmHWM")?,
    })
}

/// The soft "Max open files" limit from the text of `/proc/PID/limits` (`None`: unlimited).
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    limits.lines().find_map(|line| {
        let rest = line.strip_prefix("Max open files")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn memory(pid: u32) -> Result<MemoryReading> {
    let path = format!("/proc/{pid}/status");
    parse_status(&read(path.clone())?).ok_or_else(|| BenchError::Proc {
        path,
        source: std::io::Error::other("no VmRSS/VmHWM lines"),
    })
}

pub fn open_files_limit(pid: u32) -> Result<Option<u64>> {
    Ok(parse_open_files_limit(&read(format!(
        "/proc/{pid}/limits"
    ))?))
}

/// Clock ticks per second of the times in `/proc/PID/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of all threads, from the text of `/proc/PID/stat`.
pub fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may contain spaces: count fields after it.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the whole line; field 3 is the first after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    let ticks = user + system;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    parse_cpu_time(&read(path.clone())?).ok_or_else(|| BenchError::Proc {
        path,
        source: std::io::Error::other("unexpected format"),
    })
}

/// Busy time of all CPUs together (user, nice, system, irq, softirq, steal), from the text
/// of `/proc/stat`.
pub fn parse_machine_busy(stat: &str) -> Option<Duration> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let field = |index: usize| ticks.get(index).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    Some(Duration::from_millis(busy * 1000 / TICKS_PER_SECOND))
}

pub fn machine_busy() -> Result<Duration> {
    let path = "/proc/stat".to_owned();
    parse_machine_busy(&read(path.clone())?).ok_or_else(|| BenchError::Proc {
        path,
        source: std::io::Error::other("no cpu line"),
    })
}

/// How many file descriptors the process has open.
pub fn open_files(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).map_err(|source| BenchError::Proc { path, source })?;
    Ok(entries.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status =
            "Name:\tbedrock-gateway\nVmPeak:\t  900 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(
            parse_status(status),
            Some(MemoryReading {
                rss_kib: 40960,
                peak_rss_kib: 51234
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                40000                files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
    }

    #[test]
    fn cpu_time_adds_user_and_system_ticks() {
        let stat =
            "4242 (bedrock gateway) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_millis(3800)));
        assert_eq!(parse_cpu_time("4242 (x) S 1"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(Duration::from_millis(1610)));
        assert!(machine_busy().is_ok());
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        assert!(memory(pid).unwrap().rss_kib > 0);
        assert!(open_files(pid).unwrap() > 0);
        assert!(open_files_limit(pid).is_ok());
        assert!(cpu_time(pid).is_ok());
    }
}
