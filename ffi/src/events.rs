//! Events: lifecycle events and the bus events the host subscribed to, polled from a bounded queue
//! or pushed to a callback on the reactor thread.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use clove_core::runtime::{Event, EventCallback, EventKind};

use crate::agents::clove_exit;
use crate::boundary::{clove_status, guard, out_arg, str_arg, Error};
use crate::handle::BoxHandle;
use crate::runtime::{clove_runtime, timeout};

/// What happened to an agent.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clove_event_kind {
    /// Its process started (again, after a restart); see `pid`.
    Spawned = 0,
    /// Its process ended, by itself or by a kill; see `exit`.
    Exited = 1,
    Paused = 2,
    Resumed = 3,
    /// It will be started again after `delay_ms`: restart number `attempt` in its window.
    Restarting = 4,
    /// Its restart budget is spent; it will not be started again.
    Escalated = 5,
    /// The kernel killed one of its processes for exceeding its memory limit; EXITED follows.
    Oom = 6,
    /// The bus events below come once subscribed to with `clove_runtime_subscribe`; `data_json`
    /// holds their data. A message reached an agent's mailbox.
    MessageReceived = 7,
    /// A state store key changed.
    StateChanged = 8,
    /// The policy refused one of the agent's requests.
    SyscallBlocked = 9,
    /// An agent hit a limit (its mailbox was full, ...).
    ResourceWarning = 10,
    /// An agent emitted a custom event; `name` is its type.
    Custom = 11,
}

/// An event. Fields that do not apply to its kind are 0 or NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct clove_event {
    pub agent_id: u64,
    pub kind: clove_event_kind,
    /// For SPAWNED: the new process id.
    pub pid: u32,
    /// For EXITED: how it ended.
    pub exit: clove_exit,
    /// For RESTARTING: the restart's number within the window.
    pub attempt: u32,
    /// For RESTARTING: how long until the restart.
    pub delay_ms: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// For bus events: the seed's type name (`"MESSAGE_RECEIVED"`), or for CUSTOM the emitter's
    /// own name. NULL for lifecycle events.
    pub name: *const c_char,
    /// For bus events: the event's data as a JSON object. NULL for lifecycle events.
    pub data_json: *const c_char,
}

/// The strings a bus event's `clove_event` points into.
struct EventStrings {
    name: CString,
    data_json: CString,
}

thread_local! {
    /// The strings of the last event `clove_runtime_next_event` gave this thread: valid until its
    /// next call there.
    static LAST_EVENT: RefCell<Option<EventStrings>> = const { RefCell::new(None) };
}

/// An event as C sees it, and the strings it points into (which must outlive it).
fn to_c(event: &Event) -> (clove_event, Option<EventStrings>) {
    let mut c = clove_event {
        agent_id: event.agent_id.0,
        kind: clove_event_kind::Spawned,
        pid: 0,
        exit: clove_exit::default(),
        attempt: 0,
        delay_ms: 0,
        timestamp_ms: event.timestamp_ms,
        name: std::ptr::null(),
        data_json: std::ptr::null(),
    };
    let mut strings = None;
    c.kind = match &event.kind {
        EventKind::Spawned { pid } => {
            c.pid = *pid;
            clove_event_kind::Spawned
        }
        EventKind::Exited(exit) => {
            c.exit = (*exit).into();
            clove_event_kind::Exited
        }
        EventKind::Paused => clove_event_kind::Paused,
        EventKind::Resumed => clove_event_kind::Resumed,
        EventKind::Restarting { attempt, delay_ms } => {
            c.attempt = *attempt;
            c.delay_ms = *delay_ms;
            clove_event_kind::Restarting
        }
        EventKind::Escalated => clove_event_kind::Escalated,
        EventKind::Oom => clove_event_kind::Oom,
        EventKind::Bus(bus) => {
            // Names and JSON come from the runtime and hold no NUL; one that did would read as "".
            let text = |s: &str| CString::new(s).unwrap_or_default();
            let made = EventStrings {
                name: text(bus.custom_type.as_deref().unwrap_or(&bus.event_type)),
                data_json: text(&bus.data_json),
            };
            c.name = made.name.as_ptr();
            c.data_json = made.data_json.as_ptr();
            strings = Some(made);
            match bus.event_type.as_str() {
                "MESSAGE_RECEIVED" => clove_event_kind::MessageReceived,
                "STATE_CHANGED" => clove_event_kind::StateChanged,
                "SYSCALL_BLOCKED" => clove_event_kind::SyscallBlocked,
                "RESOURCE_WARNING" => clove_event_kind::ResourceWarning,
                _ => clove_event_kind::Custom,
            }
        }
    };
    // Moving a CString does not move its heap bytes, which the pointers above name.
    (c, strings)
}

/// Called on the runtime's reactor thread for every event, with the `user_data` given to
/// `clove_runtime_set_event_callback`. `event` is valid only during the call. The callback must
/// return quickly and must not call any `clove_runtime_*` function on the same runtime (that
/// function would wait for the thread that is running the callback); hand the event to another
/// thread instead.
pub type clove_event_callback = Option<unsafe extern "C" fn(event: *const clove_event, user_data: *mut c_void)>;

/// A C callback and the pointer it is called with, moved to the reactor thread.
struct Callback {
    call: unsafe extern "C" fn(*const clove_event, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: Clove never reads or writes through `user_data`; it only hands it back to `call`, on the
// reactor thread. The header requires of the caller that `call` may run on that thread with this
// `user_data`, which is what `Send` asks of the pair.
unsafe impl Send for Callback {}

// SAFETY: a shared `&Callback` is only used to call `deliver`, and only the reactor thread does that;
// other threads merely hold or drop the reference, which touches neither `call` nor `user_data`.
unsafe impl Sync for Callback {}

impl Callback {
    fn deliver(&self, event: &Event) {
        let (event, _strings) = to_c(event);
        // SAFETY: `call` came from C as a function of this signature; `&event` and the strings it
        // points into (`_strings`) are valid for the whole call; `user_data` is passed back
        // untouched, as the caller asked.
        unsafe { (self.call)(&event, self.user_data) }
    }
}

/// Takes the oldest unread event into `out`, waiting up to `timeout_ms` (< 0: forever);
/// `CLOVE_STATUS_TIMEOUT` when none came. Events are queued whether or not a callback is set; when
/// the host falls behind, the oldest are dropped. A bus event's `name` and `data_json` stay valid
/// until the next call of this function on the same thread.
///
/// Thread-safety: any thread, concurrently with other calls on the runtime; each event goes to
/// one caller only.
///
/// # Safety
/// `rt` is NULL or a live runtime; `out` is NULL or valid for writing one `clove_event`.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_next_event(
    rt: *mut clove_runtime,
    timeout_ms: i64,
    out: *mut clove_event,
) -> clove_status {
    guard("clove_runtime_next_event", || {
        // SAFETY: the caller's contract on `rt` and `out`.
        let (rt, out) = unsafe { (clove_runtime::borrow(rt, "rt")?, out_arg(out, "out")?) };
        let event = rt
            .next_event(timeout(timeout_ms))
            .ok_or_else(|| Error::new(clove_status::Timeout, format!("no event within {timeout_ms} ms")))?;
        let (c, strings) = to_c(&event);
        LAST_EVENT.with(|last| *last.borrow_mut() = strings);
        out.write(c);
        Ok(())
    })
}

/// Sets the callback run on the reactor thread for every event, replacing any other; NULL clears
/// it. Once this returns, the previous callback is not running and will not be called again, so
/// its `user_data` may be released. `clove_runtime_free` clears the callback the same way.
///
/// Thread-safety: any thread but the reactor's (never from inside a callback), concurrently with
/// other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime. `callback` is NULL or a function safe to call on another thread
/// with `user_data` until it is replaced, cleared or the runtime freed.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_set_event_callback(
    rt: *mut clove_runtime,
    callback: clove_event_callback,
    user_data: *mut c_void,
) -> clove_status {
    guard("clove_runtime_set_event_callback", || {
        // SAFETY: the caller's contract on `rt`.
        let rt = unsafe { clove_runtime::borrow(rt, "rt") }?;
        let callback = callback.map(|call| Callback { call, user_data });
        rt.set_event_callback(callback.map(|c| -> EventCallback { Arc::new(move |event| c.deliver(event)) }));
        Ok(())
    })
}

/// Adds a bus event type the host gets, as events of the bus kinds: `"MESSAGE_RECEIVED"`,
/// `"STATE_CHANGED"`, `"SYSCALL_BLOCKED"`, `"RESOURCE_WARNING"`, `"CUSTOM"`, a custom event's own
/// name, or `"*"` for all. Lifecycle events always come.
///
/// Thread-safety: any thread but the reactor's, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; `event_type` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_subscribe(rt: *mut clove_runtime, event_type: *const c_char) -> clove_status {
    guard("clove_runtime_subscribe", || {
        // SAFETY: the caller's contract on `rt` and `event_type`.
        let (rt, event_type) = unsafe { (clove_runtime::borrow(rt, "rt")?, str_arg(event_type, "event_type")?) };
        rt.subscribe(&[event_type])?;
        Ok(())
    })
}

/// Removes a bus event type `clove_runtime_subscribe` added.
///
/// Thread-safety: any thread but the reactor's, concurrently with other calls on the runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime; `event_type` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_unsubscribe(rt: *mut clove_runtime, event_type: *const c_char) -> clove_status {
    guard("clove_runtime_unsubscribe", || {
        // SAFETY: the caller's contract on `rt` and `event_type`.
        let (rt, event_type) = unsafe { (clove_runtime::borrow(rt, "rt")?, str_arg(event_type, "event_type")?) };
        rt.unsubscribe(&[event_type])?;
        Ok(())
    })
}
