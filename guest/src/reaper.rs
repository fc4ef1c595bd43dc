//! The one place that waits for children. As PID 1 the guest inherits every orphan, so it must call
//! `waitpid(-1)`; that would steal the status of a child someone else waits for, so nobody else waits:
//! a starter registers the pid under the same lock it spawns under, and the reaper, which peeks at
//! an exited child before taking that lock and reaps it after, hands the status to whoever
//! registered it. Unregistered pids (orphans) are reaped and forgotten.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

#[derive(Default)]
struct Waiters {
    by_pid: HashMap<u32, Sender<Exit>>,
    /// Counts spawns, so the reaper can tell one happened between its ECHILD and its sleep.
    spawned: u64,
}

/// Shared by every thread that starts processes.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<(Mutex<Waiters>, Condvar)>,
}

impl Reaper {
    /// Starts the reaping thread.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let worker = reaper.clone();
        std::thread::Builder::new().name("reaper".into()).spawn(move || worker.run())?;
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // The map stays consistent whatever panicked while holding it: each change is one insert
        // or remove.
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns `cmd` and returns the child with a receiver for its end. Never call `Child::wait`.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(Child, Receiver<Exit>)> {
        let mut waiters = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = mpsc::channel();
        waiters.by_pid.insert(child.id(), tx);
        waiters.spawned += 1;
        drop(waiters);
        self.inner.1.notify_all();
        Ok((child, rx))
    }

    fn run(&self) {
        loop {
            let spawned = self.lock().spawned;
            // SAFETY: siginfo_t is plain old data; all-zero bytes are a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // Peek (WNOWAIT) rather than reap: std's spawn itself waits for a child whose exec
            // failed, and stealing that child makes it panic. The lock below waits out any spawn.
            // SAFETY: waitid writes only to `info`, a valid siginfo_t on this stack.
            let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 {
                // SAFETY: waitid succeeded with WEXITED, so `info` describes a child and si_pid is set.
                let pid = unsafe { info.si_pid() };
                let mut waiters = self.lock();
                let mut status = 0;
                // SAFETY: waitpid writes only to `status`, a valid i32 on this stack.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    let exit = if libc::WIFSIGNALED(status) {
                        Exit::Signal(libc::WTERMSIG(status))
                    } else {
                        Exit::Code(libc::WEXITSTATUS(status))
                    };
                    if let Some(tx) = waiters.by_pid.remove(&(pid as u32)) {
                        let _ = tx.send(exit);
                    }
                }
                continue;
            }
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // ECHILD: no children now. Sleep until one is spawned; the timeout catches orphans that
            // were reparented to us while we slept.
            let waiters = self.lock();
            if waiters.spawned == spawned {
                let _ = self.inner.1.wait_timeout(waiters, Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_reach_their_starters() {
        let reaper = Reaper::start().unwrap();
        let (_c, rx) = reaper.spawn(Command::new("/bin/sh").args(["-c", "exit 7"])).unwrap();
        let (_k, killed) = reaper.spawn(Command::new("/bin/sh").args(["-c", "kill -9 $$"])).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Exit::Code(7));
        let killed = killed.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((killed, killed.status()), (Exit::Signal(9), 137));
    }
}
