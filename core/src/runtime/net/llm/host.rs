//! The host provider: a handler the embedding program registers to answer THINK itself. It runs
//! on the THINK workers, never on the reactor, several calls at once when several agents think.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::{ThinkAnswer, ThinkCall};
use crate::runtime::net::NetError;

/// Answers a THINK, or says why it cannot (the agent gets the message as an `io` error). Called on
/// a worker thread, possibly on several at once; it may call the runtime's methods, but not
/// [`Runtime::set_think_handler`](crate::runtime::Runtime::set_think_handler).
pub type ThinkHandler = Arc<dyn Fn(&ThinkCall) -> Result<ThinkAnswer, String> + Send + Sync>;

thread_local! {
    /// Set while this thread runs the handler: replacing it from there would wait for itself.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// The registered handler. Each call holds the read lock while it runs, so replacing the handler
/// waits for the calls in flight: once [`HostProvider::set`] returns, the old one is not running.
#[derive(Default)]
pub(crate) struct HostProvider {
    handler: RwLock<Option<ThinkHandler>>,
    /// Whether a handler is set, for the reactor, which must never wait on the lock.
    registered: AtomicBool,
}

impl HostProvider {
    pub fn is_set(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Replaces the handler; `Err` when called from inside a handler.
    pub fn set(&self, handler: Option<ThinkHandler>) -> Result<(), &'static str> {
        if IN_HANDLER.with(Cell::get) {
            return Err("the think handler cannot be replaced from inside a think handler");
        }
        let mut slot = self.handler.write().unwrap_or_else(PoisonError::into_inner);
        self.registered.store(handler.is_some(), Ordering::Release);
        let old = std::mem::replace(&mut *slot, handler);
        drop(slot);
        // Dropped outside the lock: a C handler's release runs here.
        drop(old);
        Ok(())
    }

    /// The handler's answer, or `None` when no handler is registered.
    pub fn call(&self, call: &ThinkCall) -> Option<Result<ThinkAnswer, NetError>> {
        let slot = self.handler.read().unwrap_or_else(PoisonError::into_inner);
        let handler = slot.as_ref()?;
        IN_HANDLER.with(|h| h.set(true));
        let answered = catch_unwind(AssertUnwindSafe(|| handler(call)));
        IN_HANDLER.with(|h| h.set(false));
        Some(match answered {
            Ok(answer) => answer.map_err(NetError::Host),
            Err(_) => Err(NetError::Panicked("the host think handler")),
        })
    }
}
