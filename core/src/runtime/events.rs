//! Lifecycle events for the host: a bounded queue it can poll, and an optional callback that the
//! reactor thread calls as each event happens.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::AgentId;
use crate::protocol::ExitInfo;

/// What happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Spawned {
        pid: u32,
    },
    /// The kernel killed a process of the agent for exceeding its memory limit; `Exited` follows.
    Oom,
    /// The agent's process ended, by itself or by a kill.
    Exited(ExitInfo),
    Paused,
    Resumed,
    /// It will be started again after `delay_ms`; restart number `attempt` in its window.
    Restarting {
        attempt: u32,
        delay_ms: u64,
    },
    /// Its restart budget is spent; it will not be started again.
    Escalated,
    /// An event of the agents' bus the host subscribed to ([`super::Runtime::subscribe`]):
    /// MESSAGE_RECEIVED, STATE_CHANGED, SYSCALL_BLOCKED, RESOURCE_WARNING or CUSTOM.
    Bus(crate::protocol::BusEvent),
}

impl EventKind {
    /// The seed's event type name.
    pub fn name(&self) -> &str {
        match self {
            EventKind::Spawned { .. } => "AGENT_SPAWNED",
            EventKind::Oom => "AGENT_OOM",
            EventKind::Exited(_) => "AGENT_EXITED",
            EventKind::Paused => "AGENT_PAUSED",
            EventKind::Resumed => "AGENT_RESUMED",
            EventKind::Restarting { .. } => "AGENT_RESTARTING",
            EventKind::Escalated => "AGENT_ESCALATED",
            EventKind::Bus(event) => &event.event_type,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub agent_id: AgentId,
    pub agent_name: String,
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Called on the reactor thread for every event. It must not block or call back into the runtime
/// synchronously (that would wait on the thread that is calling it). It may replace or clear itself.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

/// The host's side of the event stream.
pub(crate) struct EventHub {
    queue: Mutex<VecDeque<Event>>,
    ready: Condvar,
    capacity: usize,
    callback: Mutex<Option<EventCallback>>,
    /// Held while a callback runs, so replacing it from another thread waits for that call to end.
    delivering: Mutex<()>,
    /// The thread that delivers: a callback replacing itself from there must not wait for itself.
    reactor: std::sync::OnceLock<std::thread::ThreadId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a queue or an Option half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventHub {
    pub fn new(capacity: usize) -> Self {
        EventHub {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            callback: Mutex::new(None),
            delivering: Mutex::new(()),
            reactor: std::sync::OnceLock::new(),
        }
    }

    /// Delivers an event: to the callback if one is set, and to the queue, dropping the oldest
    /// event when the host has not kept up.
    pub fn publish(&self, event: Event) {
        let _ = self.reactor.set(std::thread::current().id());
        {
            let _delivering = lock(&self.delivering);
            // Called outside the callback lock, so the callback may set another one.
            let callback = lock(&self.callback).clone();
            if let Some(callback) = callback {
                callback(&event);
            }
        }
        let mut queue = lock(&self.queue);
        if queue.len() == self.capacity {
            queue.pop_front();
        }
        queue.push_back(event);
        self.ready.notify_one();
    }

    /// Replaces the callback. Once this returns, the previous one is not running (unless this is
    /// called from inside it) and will not run again.
    pub fn set_callback(&self, callback: Option<EventCallback>) {
        *lock(&self.callback) = callback;
        if self.reactor.get() != Some(&std::thread::current().id()) {
            drop(lock(&self.delivering));
        }
    }

    /// The oldest queued event, waiting up to `timeout` (forever with `None`) for one.
    pub fn next(&self, timeout: Option<Duration>) -> Option<Event> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut queue = lock(&self.queue);
        loop {
            if let Some(event) = queue.pop_front() {
                return Some(event);
            }
            queue = match deadline {
                None => self.ready.wait(queue).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.ready.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }
}
