//! What the host can see of its agents: how one ended, and a snapshot list of all of them.

use std::ffi::{c_char, CString};

use clove_core::protocol::{AgentInfo, AgentState, ExitInfo};

use crate::boundary::{clove_status, guard, out_arg, Error};
use crate::handle::BoxHandle;
use crate::runtime::clove_runtime;

/// How an agent's process ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct clove_exit {
    /// Whether it exited by itself, with `code`.
    pub has_code: bool,
    /// Its exit code when `has_code`, else 0.
    pub code: i32,
    /// The signal that ended it, or 0.
    pub signal: i32,
    /// The kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
}

impl From<ExitInfo> for clove_exit {
    fn from(exit: ExitInfo) -> Self {
        clove_exit {
            has_code: exit.code.is_some(),
            code: exit.code.unwrap_or(0),
            signal: exit.signal.unwrap_or(0),
            oom_killed: exit.oom_killed,
        }
    }
}

/// An agent's state.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clove_agent_state {
    Running = 0,
    Paused = 1,
    Exited = 2,
}

/// One agent of a `clove_agent_list`. Its strings belong to the list.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct clove_agent_info {
    pub id: u64,
    /// The agent that spawned it, or 0 for one the host spawned or that connected.
    pub parent: u64,
    /// Its process id (of its last run when ended); 0 for one that connected.
    pub pid: u32,
    pub state: clove_agent_state,
    pub uptime_ms: u64,
    /// Valid until `clove_agent_list_free`.
    pub name: *const c_char,
    /// Its level's name, or "custom" for custom permissions. Valid until `clove_agent_list_free`.
    pub level: *const c_char,
    /// Whether it ended, as told by `exit`.
    pub has_exit: bool,
    pub exit: clove_exit,
}

/// A snapshot of every agent the runtime knows, running or recently ended. Owned by the caller:
/// free with `clove_agent_list_free`.
pub struct clove_agent_list {
    _private: [u8; 0],
}

/// An agent with its strings made ready for C.
pub(crate) struct ListedAgent {
    info: AgentInfo,
    name: CString,
    level: CString,
}

impl BoxHandle for clove_agent_list {
    type Rust = Vec<ListedAgent>;
}

/// The text made C-safe: an interior NUL (never in names the runtime accepts) ends it early.
fn c_string(text: &str) -> CString {
    let until_nul = text.split('\0').next().unwrap_or_default();
    CString::new(until_nul).unwrap_or_default()
}

impl From<AgentInfo> for ListedAgent {
    fn from(info: AgentInfo) -> Self {
        let level = info.level.map_or("custom", |l| l.name());
        ListedAgent { name: c_string(&info.name), level: c_string(level), info }
    }
}

impl ListedAgent {
    fn to_c(&self) -> clove_agent_info {
        let info = &self.info;
        clove_agent_info {
            id: info.id,
            parent: info.parent.unwrap_or(0),
            pid: info.pid,
            state: match info.state {
                AgentState::Running => clove_agent_state::Running,
                AgentState::Paused => clove_agent_state::Paused,
                AgentState::Exited => clove_agent_state::Exited,
            },
            uptime_ms: info.uptime_ms,
            name: self.name.as_ptr(),
            level: self.level.as_ptr(),
            has_exit: info.exit.is_some(),
            exit: info.exit.map(clove_exit::from).unwrap_or_default(),
        }
    }
}

/// Takes a snapshot of every agent the runtime knows, running or recently ended.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; `out` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_list(rt: *mut clove_runtime, out: *mut *mut clove_agent_list) -> clove_status {
    guard("clove_runtime_list", || {
        // SAFETY: the caller's contract on `rt` and `out`.
        let (rt, out) = unsafe { (clove_runtime::borrow(rt, "rt")?, out_arg(out, "out")?) };
        let agents = rt.list()?.into_iter().map(ListedAgent::from).collect();
        out.write(clove_agent_list::into_handle(agents));
        Ok(())
    })
}

/// The number of agents in a list; 0 for NULL.
///
/// Thread-safety: any thread; a list is never changed after it is made.
///
/// # Safety
/// `list` is NULL or a live list.
#[no_mangle]
pub unsafe extern "C" fn clove_agent_list_len(list: *const clove_agent_list) -> usize {
    let mut len = 0;
    guard("clove_agent_list_len", || {
        // SAFETY: the caller's contract on `list`; NULL comes back as an error, counted as 0.
        len = unsafe { clove_agent_list::borrow(list, "list") }.map_or(0, Vec::len);
        Ok(())
    });
    len
}

/// Writes the agent at `index` to `out`; an index past the end gives
/// `CLOVE_STATUS_INVALID_ARGUMENT`.
///
/// Thread-safety: any thread; a list is never changed after it is made.
///
/// # Safety
/// `list` is NULL or a live list; `out` is NULL or valid for writing one `clove_agent_info`.
#[no_mangle]
pub unsafe extern "C" fn clove_agent_list_get(
    list: *const clove_agent_list,
    index: usize,
    out: *mut clove_agent_info,
) -> clove_status {
    guard("clove_agent_list_get", || {
        // SAFETY: the caller's contract on `list` and `out`.
        let (list, out) = unsafe { (clove_agent_list::borrow(list, "list")?, out_arg(out, "out")?) };
        let agent = list
            .get(index)
            .ok_or_else(|| Error::invalid(format!("index {index} is out of range (the list has {})", list.len())))?;
        out.write(agent.to_c());
        Ok(())
    })
}

/// Frees a list and the strings of every `clove_agent_info` read from it; NULL does nothing.
///
/// Thread-safety: not while another call uses the same list.
///
/// # Safety
/// `list` is NULL or came from `clove_runtime_list` and was not freed.
#[no_mangle]
pub unsafe extern "C" fn clove_agent_list_free(list: *mut clove_agent_list) {
    guard("clove_agent_list_free", || {
        // SAFETY: the caller's contract on `list`.
        unsafe { clove_agent_list::free(list) };
        Ok(())
    });
}
