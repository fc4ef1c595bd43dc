//! One stream connection between a guest port and a host `UnixStream`, with virtio-vsock's
//! credit accounting (virtio 1.2, 5.10.6.3): each side advertises `buf_alloc` (its receive
//! buffer) and `fwd_cnt` (bytes it has consumed), and a sender keeps
//! `tx_cnt - peer_fwd_cnt <= peer_buf_alloc`.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::num::Wrapping;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use super::packet::{SHUTDOWN_RCV, SHUTDOWN_SEND};

/// What we advertise as our receive buffer: guest bytes we hold for a host stream that is not
/// reading. It bounds the memory one connection can make us hold.
pub const HOST_BUF_ALLOC: u32 = 256 * 1024;
/// Once the guest believes less than this is free, a CREDIT_UPDATE tells it what really is.
const CREDIT_UPDATE_THRESHOLD: u32 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub host_port: u32,
    pub guest_port: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST sent, waiting for the guest's RESPONSE.
    Connecting,
    Established,
}

/// The guest sent more than the credit we gave it.
#[derive(Debug)]
pub struct Overrun;

pub struct Connection {
    pub stream: UnixStream,
    pub state: State,
    // Guest to host.
    rx_cnt: Wrapping<u32>,
    fwd_cnt: Wrapping<u32>,
    fwd_cnt_sent: Wrapping<u32>,
    to_host: VecDeque<u8>,
    // Host to guest.
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    tx_cnt: Wrapping<u32>,
    /// SHUTDOWN flags the guest has sent.
    pub guest_shut: u32,
    host_write_closed: bool,
    /// The host stream reached EOF; SHUTDOWN(SEND) went to the guest.
    pub host_eof: bool,
    /// Queued on the muxer's readable ring; the poller stops watching for input meanwhile.
    pub in_readable: bool,
    pub credit_update_queued: bool,
    /// A CREDIT_REQUEST went out since the guest last told us its credit.
    pub credit_requested: bool,
}

impl Connection {
    pub fn new(stream: UnixStream, state: State) -> Self {
        Self {
            stream,
            state,
            rx_cnt: Wrapping(0),
            fwd_cnt: Wrapping(0),
            fwd_cnt_sent: Wrapping(0),
            to_host: VecDeque::new(),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            tx_cnt: Wrapping(0),
            guest_shut: 0,
            host_write_closed: false,
            host_eof: false,
            in_readable: false,
            credit_update_queued: false,
            credit_requested: false,
        }
    }

    /// Every guest packet carries its current buffer size and consumed count.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
        self.credit_requested = false;
    }

    /// Bytes we may still send the guest. A guest whose numbers make no sense (a fwd_cnt past
    /// what we sent, a buffer shrunk below what is in flight) gets no credit, not a wrap.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.tx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    pub fn sent_to_guest(&mut self, n: u32) {
        self.tx_cnt += Wrapping(n);
    }

    /// Host data may go to the guest: connected, the host stream open for reading, and the
    /// guest still receiving with room for it.
    pub fn wants_host_input(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.guest_shut & SHUTDOWN_RCV == 0
            && self.peer_credit() > 0
    }

    /// Takes a guest RW payload, checked against the credit the guest knows of: our buffer
    /// less what it sent since the last fwd_cnt we told it. That also bounds what we hold.
    pub fn receive(&mut self, payload: &[u8]) -> Result<(), Overrun> {
        let unacknowledged = (self.rx_cnt - self.fwd_cnt_sent).0;
        let free = HOST_BUF_ALLOC.saturating_sub(unacknowledged) as usize;
        if payload.len() > free || self.guest_shut & SHUTDOWN_SEND != 0 {
            return Err(Overrun);
        }
        self.to_host.extend(payload);
        // Fits in u32: bounded by HOST_BUF_ALLOC.
        self.rx_cnt += Wrapping(payload.len() as u32);
        Ok(())
    }

    pub fn has_pending_output(&self) -> bool {
        !self.to_host.is_empty()
    }

    /// Writes buffered guest bytes to the host stream until it would block, then passes on the
    /// guest's SHUTDOWN(SEND) once nothing is left. Never blocks (the stream is nonblocking).
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match send_nosignal(&self.stream, front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.to_host.drain(..n);
                    // n <= HOST_BUF_ALLOC, so it fits.
                    self.fwd_cnt += Wrapping(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.guest_shut & SHUTDOWN_SEND != 0 && !self.host_write_closed {
            self.host_write_closed = true;
            // The host end may already be gone; it sees EOF either way.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Both directions are finished from the guest's side and every byte was delivered:
    /// the connection can be reset and forgotten.
    pub fn guest_done(&self) -> bool {
        self.guest_shut == SHUTDOWN_RCV | SHUTDOWN_SEND && self.to_host.is_empty()
    }

    /// Whether the guest should hear how much room it really has.
    pub fn wants_credit_update(&self) -> bool {
        let guest_view_used = (self.rx_cnt - self.fwd_cnt_sent).0;
        let guest_view_free = HOST_BUF_ALLOC.saturating_sub(guest_view_used);
        self.fwd_cnt != self.fwd_cnt_sent && guest_view_free < CREDIT_UPDATE_THRESHOLD
    }

    /// The (buf_alloc, fwd_cnt) pair for an outgoing header; the guest now knows this fwd_cnt.
    pub fn credit_fields(&mut self) -> (u32, u32) {
        self.fwd_cnt_sent = self.fwd_cnt;
        (HOST_BUF_ALLOC, self.fwd_cnt.0)
    }
}

/// `write(2)` on a socket whose peer is gone raises SIGPIPE, which kills an embedding process
/// that has not ignored it (only Rust's own `main` does); `send` with MSG_NOSIGNAL returns EPIPE.
fn send_nosignal(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the fd is owned by `stream`, open for the whole call; the pointer and length
    // describe `buf`, which is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::send(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // Non-negative and at most buf.len().
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        (Connection::new(a, State::Established), b)
    }

    #[test]
    fn credit_never_exceeds_what_the_guest_advertised() {
        let (mut c, _peer) = conn();
        c.update_peer_credit(1000, 0);
        c.sent_to_guest(600);
        assert_eq!(c.peer_credit(), 400);
        c.update_peer_credit(1000, 600);
        assert_eq!(c.peer_credit(), 1000);
        // A lying fwd_cnt (more than we ever sent) or a shrunk buffer gives no credit.
        c.update_peer_credit(100, 0);
        assert_eq!(c.peer_credit(), 0);
    }

    #[test]
    fn a_guest_overrunning_our_buffer_is_refused() {
        let (mut c, _peer) = conn();
        let big = vec![0u8; HOST_BUF_ALLOC as usize];
        assert!(c.receive(&big).is_ok());
        assert!(c.receive(&[1]).is_err());
    }

    #[test]
    fn credit_update_is_due_once_the_guest_sees_little_room() {
        let (mut c, _peer) = conn();
        let chunk = vec![7u8; (HOST_BUF_ALLOC - CREDIT_UPDATE_THRESHOLD + 1) as usize];
        c.receive(&chunk).expect("within credit");
        assert!(!c.wants_credit_update(), "nothing forwarded yet");
        // The socket buffer takes at least some of it without the peer reading.
        c.flush().expect("flush");
        assert!(c.wants_credit_update());
        let (buf_alloc, fwd_cnt) = c.credit_fields();
        assert_eq!(buf_alloc, HOST_BUF_ALLOC);
        assert!(fwd_cnt > 0 && fwd_cnt as usize <= chunk.len());
        assert!(!c.wants_credit_update());
    }
}
