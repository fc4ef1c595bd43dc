//! The vsock device as the transport sees it, and the poller thread that watches the host
//! streams and, when the VMM gave it the eventfds, the guest's queue kicks. Both reach the muxer
//! through one mutex, held only for non-blocking work; the poller sleeps in `poll(2)` with the
//! lock released and is woken through an eventfd whenever the vCPU side changed what it should
//! watch.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use virtio_queue::Queue;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::muxer::{Muxer, QUEUE_COUNT, RX, TX};
use crate::devices::virtio::{DeviceSignals, VirtioDevice};

/// virtio device id of a socket device.
pub const VIRTIO_ID_VSOCK: u32 = 19;
/// Queue size offered for rx, tx and event; Linux's driver uses whatever it is given.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; QUEUE_COUNT] = [QUEUE_SIZE; QUEUE_COUNT];

pub struct Shared {
    pub guest_cid: u64,
    muxer: Mutex<Muxer>,
    wake: EventFd,
    /// Kicks of the queues [`super::KICKED_QUEUES`] names, when they arrive on eventfds instead of
    /// through the transport.
    pub kicks: OnceLock<[EventFd; 2]>,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new(muxer: Muxer, guest_cid: u64) -> io::Result<Self> {
        Ok(Self {
            guest_cid,
            muxer: Mutex::new(muxer),
            wake: EventFd::new(EFD_NONBLOCK)?,
            kicks: OnceLock::new(),
            stop: AtomicBool::new(false),
        })
    }

    /// A panic while the lock was held cannot leave guest memory or an fd unsafe, only a
    /// connection half-updated; the device keeps going rather than taking the VMM down.
    pub fn lock(&self) -> MutexGuard<'_, Muxer> {
        self.muxer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the poller to recompute what it watches.
    pub fn wake(&self) {
        // EAGAIN means the counter is already nonzero: the poller is awake anyway.
        let _ = self.wake.write(1);
    }
}

/// The `VirtioDevice` behind the vsock's MMIO transport.
pub struct VsockDevice {
    shared: Arc<Shared>,
}

impl VsockDevice {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl VirtioDevice for VsockDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    /// Stream sockets only, which needs no feature bit (virtio 1.2, 5.10.3).
    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    /// The config space is `le64 guest_cid`.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cid = self.shared.guest_cid.to_le_bytes();
        let Ok(start) = usize::try_from(offset) else { return };
        for (i, byte) in data.iter_mut().enumerate() {
            if let Some(&b) = start.checked_add(i).and_then(|at| cid.get(at)) {
                *byte = b;
            }
        }
    }

    fn activate(&mut self, queues: Vec<Queue>, signals: Arc<DeviceSignals>) {
        self.shared.lock().activate(queues, signals);
        self.shared.wake();
    }

    fn queue_notify(&mut self, index: u16) {
        if queue_kicked(&mut self.shared.lock(), usize::from(index)) {
            self.shared.wake();
        }
    }

    fn reset(&mut self) {
        self.shared.lock().reset();
        self.shared.wake();
    }
}

/// The guest kicked queue `index`: the muxer takes what it queued. False for the event queue,
/// which only carries transport resets, which we never send.
fn queue_kicked(muxer: &mut Muxer, index: usize) -> bool {
    match index {
        RX => muxer.rx_notified(),
        TX => muxer.tx_notified(),
        _ => return false,
    }
    true
}

/// The poller thread's body: until `stop`, wait for host stream readiness and guest kicks, and
/// feed the muxer.
pub fn run_poller(shared: &Shared) {
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut keys = Vec::new();
    let readable = |fd: &EventFd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    while !shared.stop.load(Ordering::Acquire) {
        fds.clear();
        keys.clear();
        fds.push(readable(&shared.wake));
        let kicks = shared.kicks.get().map_or(&[][..], |k| &k[..]);
        fds.extend(kicks.iter().map(readable));
        let streams = fds.len();
        shared.lock().poll_set(&mut fds, &mut keys);
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
        // for the duration of the call; at most MAX_CONNECTIONS + 3 entries, so the length
        // fits nfds_t. A listed fd closed meanwhile is reported as POLLNVAL or not at all.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            // EINTR, or ENOMEM under memory pressure: try again.
            continue;
        }
        if fds[0].revents != 0 {
            let _ = shared.wake.read();
        }
        let mut muxer = shared.lock();
        for ((pfd, kick), queue) in fds[1..streams].iter().zip(kicks).zip(super::KICKED_QUEUES) {
            if pfd.revents != 0 {
                let _ = kick.read();
                queue_kicked(&mut muxer, usize::from(queue));
            }
        }
        for (pfd, key) in fds[streams..].iter().zip(&keys) {
            if pfd.revents != 0 {
                muxer.host_event(*key, pfd.fd, pfd.revents);
            }
        }
        muxer.host_events_done();
    }
    shared.lock().close_all();
}
