//! Kicking a vCPU thread out of `KVM_RUN` from another thread: set the vCPU's `immediate_exit`
//! (so a `KVM_RUN` about to start returns at once) and send the thread a real-time signal whose
//! handler does nothing (so a `KVM_RUN` in progress returns `EINTR`). Together no kick is lost,
//! whenever it lands.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::{Vcpu, VmError};

/// The offset from `SIGRTMIN()` of the kick signal. glibc keeps the first real-time signals for
/// itself and `SIGRTMIN()` already skips them; +3 stays clear of the +0/+1 that other VMMs and
/// runtimes commonly take.
const KICK_SIGNAL_OFFSET: i32 = 3;

/// The signal clove-vmm sends its vCPU threads: `SIGRTMIN() + 3` (37 with glibc). The embedding
/// process must not use it; clove-vmm installs a handler that does nothing the first time a VM
/// starts, and fails to start a VM if something else already handles it.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn ignore_kick(_signal: libc::c_int) {}

/// Installs the do-nothing handler, once per process.
pub(super) fn install_handler() -> Result<(), VmError> {
    static INSTALLED: OnceLock<Result<(), (i32, Option<i32>)>> = OnceLock::new();
    let signal = kick_signal();
    let installed = INSTALLED.get_or_init(|| {
        // SAFETY: sigaction only reads `new` and writes `old`, both valid local structs; the
        // handler is an `extern "C"` function that touches nothing, so it is async-signal-safe.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                return Err((signal, io::Error::last_os_error().raw_os_error()));
            }
            if old.sa_sigaction != libc::SIG_DFL {
                return Err((signal, None));
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = ignore_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // No SA_RESTART: the point is that KVM_RUN returns.
            new.sa_flags = 0;
            libc::sigemptyset(&mut new.sa_mask);
            if libc::sigaction(signal, &new, std::ptr::null_mut()) != 0 {
                return Err((signal, io::Error::last_os_error().raw_os_error()));
            }
        }
        Ok(())
    });
    installed.map_err(|(signal, errno)| match errno {
        None => VmError::SignalInUse { signal },
        Some(errno) => VmError::Signal { signal, source: io::Error::from_raw_os_error(errno) },
    })
}

/// Lets the calling thread receive the kick even if the thread that spawned it blocked signals.
fn unblock_in_this_thread() {
    // SAFETY: `set` is a valid local sigset; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// A running vCPU thread: its id and its vCPU's `immediate_exit` byte.
struct Running {
    tid: libc::pid_t,
    immediate_exit: *mut u8,
}

// SAFETY: the pointer is only dereferenced under the `Kick` mutex, while the vCPU thread that owns
// the mapping is registered (it unregisters, under the same mutex, before dropping its vCPU).
unsafe impl Send for Running {}

/// How to reach one vCPU thread.
#[derive(Default)]
pub struct Kick {
    running: Mutex<Option<Running>>,
}

/// Unregisters the vCPU thread when dropped (before the vCPU it points into).
pub struct Registration<'a>(&'a Kick);

impl Kick {
    /// Called on the vCPU thread before its first `KVM_RUN`, once [`install_handler`] succeeded.
    pub fn register<'a>(&'a self, vcpu: &mut Vcpu) -> Registration<'a> {
        unblock_in_this_thread();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        let immediate_exit = &mut vcpu.fd_mut().get_kvm_run().immediate_exit as *mut u8;
        *self.lock() = Some(Running { tid, immediate_exit });
        Registration(self)
    }

    /// The thread id, while the thread runs.
    pub fn tid(&self) -> Option<libc::pid_t> {
        self.lock().as_ref().map(|r| r.tid)
    }

    /// Makes the vCPU leave `KVM_RUN` now (or not enter it again). Does nothing once it has ended.
    pub fn kick(&self) {
        if let Some(running) = self.lock().as_ref() {
            // SAFETY: `immediate_exit` points into the vCPU's kvm_run mapping, alive while the
            // thread is registered (we hold the lock it unregisters under). The kernel reads the
            // byte with READ_ONCE; every user-space access to it is this atomic store.
            unsafe { AtomicU8::from_ptr(running.immediate_exit) }.store(1, Ordering::SeqCst);
            // SAFETY: tgkill with our own pid and the tid of a thread that is still registered,
            // hence alive; the signal's handler is installed (register did it).
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), running.tid, kick_signal()) };
        }
    }

    /// Lets the next `KVM_RUN` enter the guest: called on the vCPU thread after a kick was taken.
    pub fn clear(&self) {
        if let Some(running) = self.lock().as_ref() {
            // SAFETY: as in `kick`: the mapping is alive while registered, and stores are atomic.
            unsafe { AtomicU8::from_ptr(running.immediate_exit) }.store(0, Ordering::SeqCst);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        // The guarded value is a plain pair, valid whatever a panicking holder was doing.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}
