//! The vsock device's state: its queues once live, the connections, the host ports waiting for
//! a guest, and the packets owed to the guest. Two threads drive it under one mutex: the vCPU
//! (queue notifications) and the poller (host stream readiness). Nothing here blocks: host
//! streams are nonblocking and guest memory is plain memory.

mod rx;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::conn::{ConnKey, Connection, State};
use super::packet::*;
use super::VsockError;
use crate::devices::virtio::DeviceSignals;

/// The host's CID, the only one the guest can reach.
pub const HOST_CID: u64 = 2;
/// Connections at once; a REQUEST past it gets RST, `connect` an error.
pub const MAX_CONNECTIONS: usize = 1024;
/// Host ports for host-initiated connections start here, far above anything an embedder
/// registers for the guest to connect to.
pub const FIRST_HOST_PORT: u32 = 1 << 30;
/// Control packets waiting for rx buffers. Only a guest spraying packets at unknown
/// connections can fill it, and its excess RSTs are then dropped.
const MAX_CONTROL: usize = 4 * MAX_CONNECTIONS;

pub const RX: usize = 0;
pub const TX: usize = 1;
pub const QUEUE_COUNT: usize = 3;

struct Control {
    key: ConnKey,
    op: u16,
    flags: u32,
}

struct Live {
    queues: Vec<Queue>,
    signals: Arc<DeviceSignals>,
}

pub struct Muxer {
    guest_cid: u64,
    mem: GuestMemoryMmap,
    live: Option<Live>,
    conns: HashMap<ConnKey, Connection>,
    listeners: HashMap<u32, UnixStream>,
    control: VecDeque<Control>,
    /// Connections whose host stream has input, read round-robin into rx buffers.
    readable: VecDeque<ConnKey>,
    next_port: u32,
    /// The guest has given us no rx buffer since we last ran out.
    rx_starved: bool,
    /// Buffers went into a used ring since the last interrupt.
    used: bool,
}

impl Muxer {
    pub fn new(guest_cid: u64, mem: GuestMemoryMmap) -> Self {
        Self {
            guest_cid,
            mem,
            live: None,
            conns: HashMap::new(),
            listeners: HashMap::new(),
            control: VecDeque::new(),
            readable: VecDeque::new(),
            next_port: FIRST_HOST_PORT,
            rx_starved: false,
            used: false,
        }
    }

    pub fn activate(&mut self, queues: Vec<Queue>, signals: Arc<DeviceSignals>) {
        self.live = Some(Live { queues, signals });
        self.rx_starved = false;
        // The driver may have queued buffers (and kicked) before DRIVER_OK.
        self.process_tx();
        self.fill_rx();
        self.signal();
    }

    /// A device reset: every connection and owed packet goes; the registered host ports stay,
    /// since Linux resets the device at probe, before it could have connected to any.
    pub fn reset(&mut self) {
        self.live = None;
        self.conns.clear();
        self.control.clear();
        self.readable.clear();
        self.rx_starved = false;
        self.used = false;
    }

    pub fn close_all(&mut self) {
        self.reset();
        self.listeners.clear();
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn add_listener(&mut self, port: u32, stream: UnixStream) -> Result<(), VsockError> {
        if port >= FIRST_HOST_PORT || self.listeners.contains_key(&port) {
            return Err(VsockError::PortUnavailable(port));
        }
        stream.set_nonblocking(true).map_err(VsockError::Socket)?;
        self.listeners.insert(port, stream);
        Ok(())
    }

    pub fn connect(&mut self, guest_port: u32) -> Result<UnixStream, VsockError> {
        if self.conns.len() >= MAX_CONNECTIONS {
            return Err(VsockError::TooManyConnections);
        }
        let key = self.free_host_port(guest_port).ok_or(VsockError::TooManyConnections)?;
        let (ours, theirs) = UnixStream::pair().map_err(VsockError::Socket)?;
        ours.set_nonblocking(true).map_err(VsockError::Socket)?;
        self.conns.insert(key, Connection::new(ours, State::Connecting));
        self.push_control(key, OP_REQUEST, 0);
        self.fill_rx();
        self.signal();
        Ok(theirs)
    }

    fn free_host_port(&mut self, guest_port: u32) -> Option<ConnKey> {
        // At most MAX_CONNECTIONS keys are taken, so this many tries always find one.
        for _ in 0..=MAX_CONNECTIONS {
            let key = ConnKey { host_port: self.next_port, guest_port };
            self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
            if !self.conns.contains_key(&key) {
                return Some(key);
            }
        }
        None
    }

    pub fn tx_notified(&mut self) {
        self.process_tx();
        self.fill_rx();
        self.signal();
    }

    pub fn rx_notified(&mut self) {
        self.rx_starved = false;
        self.fill_rx();
        self.signal();
    }

    fn failed(&self) -> bool {
        self.live.as_ref().is_none_or(|l| l.signals.has_failed())
    }

    /// The driver broke the virtqueue protocol: the device stops, and its connections end
    /// (their host ends see EOF).
    fn fail(&mut self) {
        if let Some(live) = &self.live {
            live.signals.fail();
        }
        self.conns.clear();
        self.control.clear();
        self.readable.clear();
    }

    fn signal(&mut self) {
        if let (true, Some(live)) = (std::mem::take(&mut self.used), &self.live) {
            live.signals.signal_used();
        }
    }

    fn process_tx(&mut self) {
        while !self.failed() {
            let Some(live) = self.live.as_mut() else { return };
            let queue = &mut live.queues[TX];
            let next = queue.iter(&self.mem).map(|mut chains| chains.next());
            let chain = match next {
                Ok(Some(chain)) => chain,
                Ok(None) => return,
                Err(_) => return self.fail(), // an avail index that skips past the ring
            };
            let head = chain.head_index();
            let parsed = read_tx(&self.mem, chain);
            if queue.add_used(&self.mem, head, 0).is_err() {
                return self.fail();
            }
            self.used = true;
            match parsed {
                Ok(TxPacket::Packet(header, payload)) => self.handle_packet(&header, &payload),
                Ok(TxPacket::BadLen(header)) => self.rst(key_of(&header)),
                Ok(TxPacket::NoHeader) => {}
                Err(_) => return self.fail(),
            }
        }
    }

    fn handle_packet(&mut self, h: &Header, payload: &[u8]) {
        let key = key_of(h);
        if h.type_ != TYPE_STREAM || h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            // Misaddressed, or a socket type we do not offer. Never answer RST with RST.
            if h.op != OP_RST {
                self.rst(key);
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            match h.op {
                OP_REQUEST => self.accept(key, h),
                OP_RST => {}
                _ => self.rst(key),
            }
            return;
        };
        conn.update_peer_credit(h.buf_alloc, h.fwd_cnt);
        match (conn.state, h.op) {
            (_, OP_RST) => {
                self.conns.remove(&key);
            }
            (State::Connecting, OP_RESPONSE) => conn.state = State::Established,
            (State::Established, OP_RW) => {
                if conn.receive(payload).is_err() {
                    return self.rst(key); // more than the credit we gave
                }
                self.flush(key);
            }
            (State::Established, OP_CREDIT_UPDATE) => {}
            (State::Established, OP_CREDIT_REQUEST) => self.queue_credit_update(key),
            (State::Established, OP_SHUTDOWN) => {
                conn.guest_shut |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                self.flush(key);
            }
            _ => self.rst(key),
        }
    }

    /// A guest REQUEST for a connection we do not have: bridged to the host port's stream if
    /// one is registered (one-shot), RST otherwise.
    fn accept(&mut self, key: ConnKey, h: &Header) {
        if self.conns.len() >= MAX_CONNECTIONS {
            return self.rst(key);
        }
        let Some(stream) = self.listeners.remove(&key.host_port) else {
            return self.rst(key);
        };
        let mut conn = Connection::new(stream, State::Established);
        conn.update_peer_credit(h.buf_alloc, h.fwd_cnt);
        self.conns.insert(key, conn);
        self.push_control(key, OP_RESPONSE, 0);
    }

    /// Moves buffered guest bytes to the host stream, then settles what that implies: the
    /// connection is done, or the guest should hear about freed credit.
    fn flush(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(&key) else { return };
        if conn.flush().is_err() || conn.guest_done() {
            return self.rst(key);
        }
        if conn.wants_credit_update() {
            self.queue_credit_update(key);
        }
    }

    fn queue_credit_update(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.get_mut(&key) {
            if !conn.credit_update_queued {
                conn.credit_update_queued = true;
                self.push_control(key, OP_CREDIT_UPDATE, 0);
            }
        }
    }

    /// Forgets the connection (its host end sees EOF) and tells the guest.
    fn rst(&mut self, key: ConnKey) {
        self.conns.remove(&key);
        self.push_control(key, OP_RST, 0);
    }

    fn push_control(&mut self, key: ConnKey, op: u16, flags: u32) {
        if self.control.len() < MAX_CONTROL {
            self.control.push_back(Control { key, op, flags });
        }
    }

    /// The fds the poller should watch, with their events; the poller adds its wake fd.
    pub fn poll_set(&self, fds: &mut Vec<libc::pollfd>, keys: &mut Vec<ConnKey>) {
        for (key, conn) in &self.conns {
            let mut events = 0;
            if conn.wants_host_input() && !conn.in_readable && !self.rx_starved {
                events |= libc::POLLIN;
            }
            if conn.has_pending_output() {
                events |= libc::POLLOUT;
            }
            // After EOF the only news left is the host closing its end entirely (POLLHUP).
            if events != 0 || conn.host_eof {
                fds.push(libc::pollfd { fd: conn.stream.as_raw_fd(), events, revents: 0 });
                keys.push(*key);
            }
        }
    }

    /// What `poll` said about one connection's host stream.
    pub fn host_event(&mut self, key: ConnKey, fd: i32, revents: i16) {
        let Some(conn) = self.conns.get_mut(&key) else { return };
        if conn.stream.as_raw_fd() != fd {
            return; // the connection was replaced while we polled
        }
        if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return self.rst(key);
        }
        if revents & libc::POLLOUT != 0 {
            self.flush(key);
        }
        let Some(conn) = self.conns.get_mut(&key) else { return };
        if revents & (libc::POLLIN | libc::POLLHUP) != 0 && conn.wants_host_input() {
            if !conn.in_readable {
                conn.in_readable = true;
                self.readable.push_back(key);
            }
        } else if revents & libc::POLLHUP != 0 && conn.host_eof {
            self.rst(key); // the host closed both directions
        }
    }

    /// After a round of host events: deliver what they produced.
    pub fn host_events_done(&mut self) {
        self.fill_rx();
        self.signal();
    }
}

fn key_of(h: &Header) -> ConnKey {
    ConnKey { host_port: h.dst_port, guest_port: h.src_port }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}
