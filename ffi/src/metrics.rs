//! One agent's metrics: its process as `/proc` sees it, its requests, and its cgroup's counters.

use clove_core::runtime::AgentId;

use crate::boundary::{clove_status, guard, out_arg};
use crate::handle::BoxHandle;
use crate::runtime::clove_runtime;

/// An agent's figures. The cgroup fields are 0 when `has_cgroup` is false (an agent started without
/// limits or sandbox has none).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct clove_agent_metrics {
    pub uptime_ms: u64,
    /// CPU time of its main process.
    pub cpu_time_us: u64,
    pub rss_bytes: u64,
    pub threads: u32,
    pub fds: u32,
    /// Every request it made, of any opcode.
    pub syscalls: u64,
    pub has_cgroup: bool,
    pub cgroup_cpu_usage_us: u64,
    pub cgroup_cpu_throttled_us: u64,
    pub cgroup_memory_current: u64,
    pub cgroup_memory_peak: u64,
    pub cgroup_pids_current: u64,
    pub cgroup_oom_kills: u64,
}

/// Writes agent `id`'s metrics to `out`; `CLOVE_STATUS_NOT_FOUND` for an unknown id.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; `out` is NULL or valid for writing one `clove_agent_metrics`.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_agent_metrics(
    rt: *mut clove_runtime,
    id: u64,
    out: *mut clove_agent_metrics,
) -> clove_status {
    guard("clove_runtime_agent_metrics", || {
        // SAFETY: the caller's contract on `rt` and `out`.
        let (rt, out) = unsafe { (clove_runtime::borrow(rt, "rt")?, out_arg(out, "out")?) };
        let m = rt.agent_metrics(AgentId(id))?;
        let cgroup = m.cgroup.clone().unwrap_or_default();
        out.write(clove_agent_metrics {
            uptime_ms: m.uptime_ms,
            cpu_time_us: m.cpu_time_us,
            rss_bytes: m.rss_bytes,
            threads: m.threads,
            fds: m.fds,
            syscalls: m.syscalls.iter().map(|s| s.count).sum(),
            has_cgroup: m.cgroup.is_some(),
            cgroup_cpu_usage_us: cgroup.cpu_usage_us,
            cgroup_cpu_throttled_us: cgroup.cpu_throttled_us,
            cgroup_memory_current: cgroup.memory_current,
            cgroup_memory_peak: cgroup.memory_peak,
            cgroup_pids_current: cgroup.pids_current,
            cgroup_oom_kills: cgroup.oom_kills,
        });
        Ok(())
    })
}
