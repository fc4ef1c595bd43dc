//! A started VM: one thread per vCPU running `KVM_RUN` and serving its exits from the bus, and
//! what stops them all. The first reason to stop wins (the guest powering off, a crash, a kill);
//! every vCPU is then kicked out, and once the last thread has left guest mode the exit is
//! published: to `wait`, `try_exit` and the exit eventfd. Pausing kicks the vCPUs out too, and
//! each waits outside guest mode until it is resumed or the VM stops.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::kick::{install_handler, Kick};
use super::{Exit, Vcpu, VmError};
use crate::bus::Bus;

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine through the i8042 (Linux's `reboot=k` power off or reboot).
    PoweredOff,
    /// The guest or KVM failed: a triple fault, a KVM error, an exit the VMM does not handle.
    Crashed(String),
    /// The host stopped it.
    Killed,
}

#[derive(Default)]
struct State {
    reason: Option<VmExit>,
    started: bool,
    /// vCPU threads that have not yet left guest mode for good.
    running: usize,
    /// vCPU threads waiting, out of guest mode, for the VM to be resumed.
    parked: usize,
    /// The exit is published.
    stopped: bool,
}

/// The shared run state of a VM's vCPU threads.
pub struct VmRun {
    state: Mutex<State>,
    /// Signalled on every change of `State` (and of `pausing`) that someone may wait for.
    changed: Condvar,
    /// Read by the vCPU loops before each `KVM_RUN` (no lock on the hot path).
    stopping: AtomicBool,
    pausing: AtomicBool,
    exit_fd: EventFd,
    kicks: Vec<Kick>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl VmRun {
    pub fn new(vcpus: usize) -> Result<Arc<VmRun>, VmError> {
        Ok(Arc::new(VmRun {
            state: Mutex::default(),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            pausing: AtomicBool::new(false),
            exit_fd: EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(VmError::EventFd)?,
            kicks: (0..vcpus).map(|_| Kick::default()).collect(),
            threads: Mutex::default(),
        }))
    }

    /// Starts one thread per vCPU (vCPU i gets kick i), returning once each has registered.
    pub fn start(self: &Arc<Self>, vcpus: Vec<Vcpu>, bus: Arc<Bus>) -> Result<(), VmError> {
        install_handler()?;
        {
            let mut state = self.lock();
            if state.started || state.reason.is_some() {
                return Err(VmError::AlreadyStarted);
            }
            state.started = true;
            state.running = vcpus.len();
        }
        let (ready, registered) = mpsc::channel();
        let count = vcpus.len();
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            let (run, bus, ready) = (self.clone(), bus.clone(), ready.clone());
            let thread = std::thread::Builder::new()
                .name(format!("clove-vcpu{index}"))
                .spawn(move || run.vcpu_thread(index, vcpu, &bus, ready));
            match thread {
                Ok(handle) => self.lock_threads().push(handle),
                Err(e) => {
                    self.stop(VmExit::Crashed(format!("starting vCPU {index}: {e}")));
                    // The threads never started will not report their end.
                    let mut state = self.lock();
                    state.running -= count - index;
                    if state.running == 0 && !state.stopped {
                        self.publish(&mut state);
                    }
                    return Err(VmError::Thread(e));
                }
            }
        }
        drop(ready);
        // Each thread sends once after registering; an error means one ended before that.
        for _ in 0..count {
            if registered.recv().is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Stops the VM for `reason`, unless it is already stopping for another.
    pub fn stop(&self, reason: VmExit) {
        {
            let mut state = self.lock();
            if state.reason.is_some() {
                return;
            }
            state.reason = Some(reason);
            self.stopping.store(true, Ordering::SeqCst);
            if state.running == 0 {
                self.publish(&mut state);
            }
            // Parked vCPUs wake to leave.
            self.changed.notify_all();
        }
        for kick in &self.kicks {
            kick.kick();
        }
    }

    /// Takes every vCPU out of guest mode and keeps it out until [`VmRun::resume`]; returns once
    /// each has left (the guest runs no instruction from then on). Within `timeout` a vCPU that
    /// has not left means the kick was lost: the VM is resumed and the error says so.
    pub fn pause(&self, timeout: Duration) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        if state.reason.is_some() {
            return Err(VmError::Stopped);
        }
        self.pausing.store(true, Ordering::SeqCst);
        drop(state);
        for kick in &self.kicks {
            kick.kick();
        }
        state = self.lock();
        while state.parked < state.running && state.reason.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(state);
                self.resume();
                return Err(VmError::PauseTimeout(timeout));
            }
            state = self.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        if state.reason.is_some() {
            return Err(VmError::Stopped);
        }
        Ok(())
    }

    /// Lets paused vCPUs enter guest mode again. Does nothing to a VM that is not paused.
    pub fn resume(&self) {
        let _state = self.lock();
        self.pausing.store(false, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Blocks until the VM has stopped (every vCPU out of guest mode).
    pub fn wait(&self) -> VmExit {
        let mut state = self.lock();
        while !state.stopped {
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.reason.clone().unwrap_or(VmExit::Killed)
    }

    /// How the VM ended, if it has.
    pub fn try_exit(&self) -> Option<VmExit> {
        let state = self.lock();
        state.stopped.then(|| state.reason.clone()).flatten()
    }

    /// Readable once the VM has stopped.
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the eventfd is owned by `self`, so it stays open for the borrow's lifetime.
        unsafe { BorrowedFd::borrow_raw(self.exit_fd.as_raw_fd()) }
    }

    /// The vCPU threads still running.
    pub fn thread_ids(&self) -> Vec<libc::pid_t> {
        self.kicks.iter().filter_map(Kick::tid).collect()
    }

    /// Stops the VM (as killed, unless it already stopped) and joins its threads.
    pub fn kill_and_join(&self) {
        self.stop(VmExit::Killed);
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            // A vCPU thread that panicked has already reported its end (see `vcpu_thread`).
            let _ = thread.join();
        }
    }

    fn vcpu_thread(&self, index: usize, mut vcpu: Vcpu, bus: &Bus, ready: mpsc::Sender<()>) {
        /// Reports the thread's end even if it unwinds.
        struct Ended<'a>(&'a VmRun, usize);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                self.0.vcpu_thread_ended(self.1);
            }
        }
        let _ended = Ended(self, index);
        let Some(kick) = self.kicks.get(index) else { return };
        let _registered = kick.register(&mut vcpu);
        let _ = ready.send(());
        drop(ready);
        while !self.stopping.load(Ordering::SeqCst) {
            if self.pausing.load(Ordering::SeqCst) {
                self.park();
                continue;
            }
            let crash = match vcpu.run(bus) {
                Ok(Exit::Io) => continue,
                Ok(Exit::Interrupted) => {
                    // Cleared before `pausing` is read again: a pause that kicks after this
                    // store finds the byte set, one that kicked before has `pausing` set.
                    kick.clear();
                    continue;
                }
                Ok(Exit::Shutdown) => format!("vCPU {index}: shutdown (triple fault)"),
                Ok(Exit::Halt) => format!("vCPU {index}: hlt without an interrupt controller"),
                Ok(Exit::Other(exit)) => format!("vCPU {index}: unhandled exit {exit}"),
                Err(e) => format!("vCPU {index}: {e}"),
            };
            self.stop(VmExit::Crashed(crash));
        }
    }

    /// Waits, out of guest mode, while the VM is paused and not stopping.
    fn park(&self) {
        let mut state = self.lock();
        state.parked += 1;
        self.changed.notify_all();
        while self.pausing.load(Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst) {
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.parked -= 1;
    }

    fn vcpu_thread_ended(&self, index: usize) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        if state.reason.is_none() {
            // Only a panic leaves the loop without a reason.
            drop(state);
            self.stop(VmExit::Crashed(format!("vCPU {index}: its thread panicked")));
            state = self.lock();
        }
        if state.running == 0 && !state.stopped {
            self.publish(&mut state);
        }
        // A pause waiting for this vCPU to park counts it no more.
        self.changed.notify_all();
    }

    fn publish(&self, state: &mut MutexGuard<'_, State>) {
        state.stopped = true;
        // An eventfd write fails only when its counter would overflow: it is written once.
        let _ = self.exit_fd.write(1);
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update to State is a single assignment or two; a panic cannot leave it half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
