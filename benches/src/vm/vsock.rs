//! AF_VSOCK on this host's kernel (vhost-vsock guests, such as QEMU's): a listener for the guest
//! agents' HELLO connections and host-initiated connections to their control port. std has no
//! vsock type; a `UnixStream` made from the fd is used for its `Read`/`Write` and timeouts, which
//! are plain socket calls that work on any stream socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::Result;

fn address(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc < 0 {
        return Err(format!("vsock {what}: {}", io::Error::last_os_error()).into());
    }
    Ok(())
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

/// Listens on `port` for connections from any guest.
pub struct Listener(OwnedFd);

impl Listener {
    pub fn bind(port: u32) -> Result<Listener> {
        let fd = socket().map_err(|e| format!("AF_VSOCK socket (is vhost_vsock loaded?): {e}"))?;
        let addr = address(libc::VMADDR_CID_ANY, port);
        // SAFETY: `addr` is a valid sockaddr_vm of ADDR_LEN bytes for the duration of the call.
        check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), ADDR_LEN) }, "bind")?;
        // SAFETY: listen(2) on a socket this listener owns.
        check(unsafe { libc::listen(fd.as_raw_fd(), 64) }, "listen")?;
        Ok(Listener(fd))
    }

    /// The next guest connection and the guest's CID; `None` if none came before `deadline`.
    pub fn accept(&self, deadline: Instant) -> Result<Option<(UnixStream, u32)>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut poll = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut poll, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n <= 0 {
                continue;
            }
            let mut addr = address(0, 0);
            let mut len = ADDR_LEN;
            // SAFETY: `addr` has room for `len` bytes; accept4 writes at most that and updates `len`.
            let fd = unsafe { libc::accept4(self.0.as_raw_fd(), (&raw mut addr).cast(), &mut len, libc::SOCK_CLOEXEC) };
            check(fd, "accept")?;
            // SAFETY: `fd` was just returned by accept4 and is owned by nobody else.
            let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
            stream.set_read_timeout(Some(super::DEADLINE))?;
            return Ok(Some((stream, addr.svm_cid)));
        }
    }
}

/// Connects to `port` of the guest with CID `cid`.
pub fn connect(cid: u32, port: u32) -> Result<UnixStream> {
    let fd = socket()?;
    let addr = address(cid, port);
    // SAFETY: `addr` is a valid sockaddr_vm of ADDR_LEN bytes for the duration of the call.
    check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), ADDR_LEN) }, "connect")?;
    let stream = UnixStream::from(fd);
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}
