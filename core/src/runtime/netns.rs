//! Network namespaces made ahead for sandboxes without the network. Making one is most of the cost
//! of a sandbox's clone, so a runtime running as root keeps a few ready, made by a thread of their
//! own; a sandbox that finds none makes its own, as before.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use clove_sys::sandbox::NetNamespace;

/// How many are kept ready: a burst of sandboxes beyond it makes its own while the maker catches up.
const READY: usize = 2;
/// How long the maker waits after one is taken: making one takes a CPU and the kernel's network
/// locks for most of a millisecond, which the sandbox that took it should have to itself.
const PAUSE: Duration = Duration::from_millis(10);

/// The namespaces ready, and the thread that makes them.
pub(super) struct NetnsPool {
    shared: Arc<Shared>,
    maker: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when one is taken, and at shutdown.
    wanted: Condvar,
}

#[derive(Default)]
struct State {
    ready: Vec<NetNamespace>,
    stop: bool,
}

impl NetnsPool {
    /// Starts the maker thread; `None` where this process cannot make network namespaces for
    /// others (it is not root) or has no thread for it.
    pub fn start() -> Option<NetnsPool> {
        if clove_sys::current_uid() != 0 {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let for_maker = Arc::clone(&shared);
        let maker = std::thread::Builder::new().name("clove-netns".into()).spawn(move || make(&for_maker)).ok()?;
        Some(NetnsPool { shared, maker: Some(maker) })
    }

    /// A ready namespace, if there is one; the maker makes another.
    pub fn take(&self) -> Option<NetNamespace> {
        let taken = self.shared.state.lock().ok()?.ready.pop();
        self.shared.wanted.notify_one();
        taken
    }
}

impl Drop for NetnsPool {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.stop = true;
        }
        self.shared.wanted.notify_one();
        if let Some(maker) = self.maker.take() {
            let _ = maker.join();
        }
    }
}

/// The maker thread: keeps [`READY`] namespaces until stopped. It ends when the kernel refuses one,
/// and sandboxes make their own from then on.
fn make(shared: &Shared) {
    loop {
        let Ok(state) = shared.state.lock() else { return };
        let Ok(state) = shared.wanted.wait_while(state, |s| !s.stop && s.ready.len() >= READY) else { return };
        if state.stop {
            return;
        }
        // Made without the lock held, so a spawn taking one never waits for the next.
        drop(state);
        std::thread::sleep(PAUSE);
        let Ok(made) = NetNamespace::new() else { return };
        let Ok(mut state) = shared.state.lock() else { return };
        state.ready.push(made);
    }
}
