//! Network namespaces made ahead of a sandbox's start. Making one is most of the cost of a
//! sandbox's clone (about 0.75 of 1.1 ms on the development machine), so a runtime that may make
//! them keeps a few ready, and a sandbox starts in one ([`super::SandboxSpec::network_namespace`])
//! instead of creating its own.
//!
//! Such a namespace belongs to the runtime's user namespace, not the sandbox's: nothing inside can
//! change its configuration (its loopback is brought up here), which is stricter than a namespace
//! of its own, where the sandbox's init had the capabilities until it dropped them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::stage_error;
use crate::cvt;

/// A network namespace with only loopback, up.
#[derive(Debug)]
pub struct NetNamespace(OwnedFd);

impl NetNamespace {
    /// Makes one on the calling thread, which is back in its own network namespace when this
    /// returns. Needs CAP_SYS_ADMIN (a runtime running as root). Call it from a thread that does
    /// nothing else: if the thread cannot go back (the kernel is out of memory), it stays in the new
    /// namespace, and the error says so.
    pub fn new() -> io::Result<NetNamespace> {
        let home = ThreadNetwork::current()?;
        // SAFETY: unshare takes flags; CLONE_NEWNET changes only this thread's network namespace.
        cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| stage_error("unshare network namespace", e))?;
        let made = open_own().and_then(|ns| loopback_up().map(|()| NetNamespace(ns)));
        home.restore()?;
        made
    }
}

impl AsFd for NetNamespace {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The network namespace a thread came from, to go back to after a `setns`.
pub(super) struct ThreadNetwork(OwnedFd);

impl ThreadNetwork {
    pub fn current() -> io::Result<ThreadNetwork> {
        open_own().map(ThreadNetwork)
    }

    /// Moves the calling thread into `ns` and returns where it was.
    pub fn enter(ns: RawFd) -> io::Result<ThreadNetwork> {
        let home = ThreadNetwork::current()?;
        // SAFETY: setns takes an fd the caller keeps open for the call, and a flag.
        cvt(unsafe { libc::setns(ns, libc::CLONE_NEWNET) }).map_err(|e| stage_error("setns network namespace", e))?;
        Ok(home)
    }

    /// Takes the calling thread back.
    pub fn restore(self) -> io::Result<()> {
        // SAFETY: setns takes our fd of the thread's former namespace, and a flag.
        cvt(unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) })
            .map(drop)
            .map_err(|e| stage_error("back to the thread's own network namespace", e))
    }
}

/// An fd of the calling thread's network namespace.
fn open_own() -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated literal; open returns a new fd or -1.
    let fd = cvt(unsafe { libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Brings up `lo` in the calling thread's network namespace. Only system calls, so a sandbox's
/// init may call it between clone and exec.
pub(super) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket returns a new fd or -1.
    let sock = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: an all-zero ifreq is a valid value of a plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write `req`, valid for both; `sock` is ours.
    let result = cvt(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) }).and_then(|_| {
        // SAFETY: as above; the flags field was filled by SIOCGIFFLAGS.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as above.
        cvt(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) })
    });
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    result.map(drop)
}
