//! Metrics from `/proc`: the host's load and memory, and each agent's process. Counts of requests
//! come from the agent table; cgroup counters from the agent's cgroup.

use std::collections::BTreeMap;
use std::path::Path;

use crate::protocol::{SyscallCount, SystemMetrics};

/// What `/proc/<pid>` says of one process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcessMetrics {
    pub cpu_time_us: u64,
    pub rss_bytes: u64,
    pub threads: u32,
    pub fds: u32,
}

/// Reads a process's metrics; a process that is gone reads as zeros.
pub(super) fn process(pid: u32) -> ProcessMetrics {
    if pid == 0 {
        return ProcessMetrics::default();
    }
    let dir = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    // schedstat's first field is the time spent on a CPU, in nanoseconds.
    let schedstat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
    ProcessMetrics {
        cpu_time_us: first_number(&schedstat) / 1_000,
        rss_bytes: status_field(&status, "VmRSS:") * 1024,
        threads: status_field(&status, "Threads:") as u32,
        fds: std::fs::read_dir(dir.join("fd")).map_or(0, |d| d.count() as u32),
    }
}

/// The host: CPUs this process may use, load, memory, uptime.
pub(super) fn system(agents_running: u32) -> SystemMetrics {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let own_status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    SystemMetrics {
        cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        load_avg_milli: loadavg
            .split_whitespace()
            .take(3)
            .map(|l| (l.parse::<f64>().unwrap_or(0.0) * 1000.0) as u32)
            .collect(),
        memory_total: status_field(&meminfo, "MemTotal:") * 1024,
        memory_available: status_field(&meminfo, "MemAvailable:") * 1024,
        uptime_ms: uptime
            .split_whitespace()
            .next()
            .and_then(|u| u.parse::<f64>().ok())
            .map_or(0, |s| (s * 1000.0) as u64),
        agents_running,
        runtime_rss_bytes: status_field(&own_status, "VmRSS:") * 1024,
    }
}

/// Request counts in opcode order.
pub(super) fn syscall_counts(counts: &BTreeMap<u8, u64>) -> Vec<SyscallCount> {
    counts.iter().map(|(&opcode, &count)| SyscallCount { opcode, count }).collect()
}

fn first_number(text: &str) -> u64 {
    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The number after `key` on its line of a `/proc` status-like file (`VmRSS:   1234 kB`).
fn status_field(text: &str, key: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(key)).map_or(0, first_number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_host() {
        let me = process(std::process::id());
        assert!(me.rss_bytes > 0 && me.threads >= 1 && me.fds >= 3, "{me:?}");
        let sys = system(0);
        assert!(sys.memory_total > sys.memory_available && sys.memory_available > 0, "{sys:?}");
        assert_eq!(sys.load_avg_milli.len(), 3);
        assert!(sys.cpu_count >= 1 && sys.uptime_ms > 0 && sys.runtime_rss_bytes > 0);
        assert_eq!(process(u32::MAX - 1), ProcessMetrics::default());
    }

    #[test]
    fn status_fields() {
        assert_eq!(status_field("Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t3\n", "VmRSS:"), 1234);
        assert_eq!(status_field("Threads:\t3\n", "VmRSS:"), 0);
    }
}
