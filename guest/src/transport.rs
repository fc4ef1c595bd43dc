//! How the guest reaches the host: AF_VSOCK in a VM, Unix sockets in a directory for tests on a host.
//!
//! Both give stream sockets, so both are handed out as [`UnixStream`]: std only issues `recv`, `send`,
//! `shutdown` and `dup` on it, which an AF_VSOCK socket serves exactly like a Unix one.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// The host's context id on every vsock.
const VMADDR_CID_HOST: u32 = 2;
/// Pending host connections the kernel queues before `accept`.
const BACKLOG: i32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("CLOVE_GUEST_TRANSPORT={0:?}: expected \"vsock\" or \"unix:/dir\"")]
    BadSpec(String),
    #[error("connecting to host port {port}: {source}")]
    Connect { port: u32, source: io::Error },
    #[error("listening on guest port {port}: {source}")]
    Listen { port: u32, source: io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The real thing: the host is CID 2.
    Vsock,
    /// Host port P is the socket `dir/P`; guest port P is `dir/guest-P`.
    Unix(PathBuf),
}

impl Transport {
    /// Parses `CLOVE_GUEST_TRANSPORT`; unset means vsock.
    pub fn from_spec(spec: Option<&str>) -> Result<Transport, TransportError> {
        match spec {
            None | Some("vsock") => Ok(Transport::Vsock),
            Some(s) => match s.strip_prefix("unix:") {
                Some(dir) if !dir.is_empty() => Ok(Transport::Unix(PathBuf::from(dir))),
                _ => Err(TransportError::BadSpec(s.to_string())),
            },
        }
    }

    /// Opens a stream to host port `port`.
    pub fn connect(&self, port: u32) -> Result<UnixStream, TransportError> {
        let err = |source| TransportError::Connect { port, source };
        match self {
            Transport::Unix(dir) => UnixStream::connect(dir.join(port.to_string())).map_err(err),
            Transport::Vsock => {
                let fd = vsock_socket().map_err(err)?;
                with_vsock_addr(&fd, VMADDR_CID_HOST, port, libc::connect).map_err(err)?;
                Ok(UnixStream::from(fd))
            }
        }
    }

    /// Listens on guest port `port` for connections the host opens.
    pub fn listen(&self, port: u32) -> Result<Listener, TransportError> {
        let err = |source| TransportError::Listen { port, source };
        match self {
            Transport::Unix(dir) => {
                let path = dir.join(format!("guest-{port}"));
                // A socket file left by an earlier run would make bind fail.
                let _ = std::fs::remove_file(&path);
                Ok(Listener(OwnedFd::from(UnixListener::bind(path).map_err(err)?)))
            }
            Transport::Vsock => {
                let fd = vsock_socket().map_err(err)?;
                with_vsock_addr(&fd, libc::VMADDR_CID_ANY, port, libc::bind).map_err(err)?;
                // SAFETY: listen on an fd we own, no pointers involved.
                if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } != 0 {
                    return Err(err(io::Error::last_os_error()));
                }
                Ok(Listener(fd))
            }
        }
    }
}

/// A listening stream socket of either family.
#[derive(Debug)]
pub struct Listener(OwnedFd);

impl Listener {
    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<UnixStream> {
        loop {
            // SAFETY: accept4 on a listening fd we own; NULL address pointers are allowed and mean
            // "do not report the peer's address".
            let fd = unsafe {
                libc::accept4(self.0.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
            };
            if fd >= 0 {
                // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
                return Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            // A connection that was reset while queued is the peer's problem, not the listener's.
            if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::ECONNABORTED)) {
                return Err(e);
            }
        }
    }
}

fn vsock_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket() returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `connect` or `bind` of `fd` to the vsock address (`cid`, `port`).
fn with_vsock_addr(
    fd: &OwnedFd,
    cid: u32,
    port: u32,
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
) -> io::Result<()> {
    let addr = vsock_addr(cid, port);
    // SAFETY: `fd` is an open socket we own; `addr` is a valid sockaddr_vm on the stack and the
    // length passed is its size; `call` is connect or bind, which read only that.
    let rc = unsafe {
        call(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data for which all-zero bytes are valid (and required for
    // its reserved fields).
    let mut addr: libc::sockaddr_vm = unsafe { mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        assert_eq!(Transport::from_spec(None).unwrap(), Transport::Vsock);
        assert_eq!(Transport::from_spec(Some("unix:/t")).unwrap(), Transport::Unix("/t".into()));
        let err = Transport::from_spec(Some("tcp:1")).unwrap_err();
        assert!(err.to_string().contains("tcp:1"), "{err}");
        assert!(Transport::from_spec(Some("unix:")).is_err());
    }
}
