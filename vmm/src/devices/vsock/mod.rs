//! A userspace virtio-vsock device (stream sockets only) bridging guest connections to host
//! `UnixStream`s; the host is CID 2.
//!
//! - Guest-initiated: the embedder registers, per host port, one connected stream with
//!   [`Vsock::add_host_port`]. The first guest connection to that port is bridged to it; any
//!   other guest connection to a host port gets RST.
//! - Host-initiated: [`Vsock::connect`] returns one end of a fresh socketpair and sends the guest
//!   a REQUEST from a host port at or above 2^30; the pair is bridged once the guest accepts,
//!   and the returned stream sees EOF if it refuses.
//!
//! [`Vsock::new`] returns the handle and the [`MmioTransport`] to map at the device's MMIO slot;
//! queue notifications arrive there on the vCPU thread, or, once [`Vsock::take_kicks`] gave it
//! eventfds KVM signals (ioeventfds), on the poller thread with no exit to userspace. The poller
//! thread (its tid from [`Vsock::thread_id`], for cgroup placement) moves host bytes to the guest. Every guest
//! packet is checked: lengths before use and allocation, credit on every RW; a connection
//! that misbehaves gets RST, a driver that breaks the virtqueue protocol fails the device.

mod conn;
mod device;
#[doc(hidden)]
pub mod fuzz;
mod muxer;
pub mod packet;

pub use conn::HOST_BUF_ALLOC;
pub use device::{QUEUE_SIZE, VIRTIO_ID_VSOCK};
pub use muxer::{FIRST_HOST_PORT, HOST_CID, MAX_CONNECTIONS};
pub use packet::{Header, HDR_LEN, MAX_PAYLOAD};

/// The queues whose kicks [`Vsock::take_kicks`] takes eventfds for, in its order: rx and tx.
pub const KICKED_QUEUES: [u16; 2] = [muxer::RX as u16, muxer::TX as u16];

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use self::device::{Shared, VsockDevice};
use self::muxer::Muxer;
use super::virtio::MmioTransport;
use super::IrqLine;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("guest cid {0} is reserved or does not fit 32 bits")]
    InvalidCid(u64),
    #[error("host port {0} is already registered or reserved for host-initiated connections")]
    PortUnavailable(u32),
    #[error("too many vsock connections (at most {MAX_CONNECTIONS})")]
    TooManyConnections,
    #[error("vsock socket")]
    Socket(#[source] io::Error),
    #[error("starting the vsock poller thread")]
    Thread(#[source] io::Error),
    #[error("the queue kicks already come from eventfds")]
    KicksTaken,
    #[error("virtio transport")]
    Transport(#[source] virtio_queue::Error),
}

/// The host side of one VM's vsock device. Dropping it stops the poller and closes every
/// connection; the transport then answers the guest with RST only.
pub struct Vsock {
    shared: Arc<Shared>,
    poller: Option<JoinHandle<()>>,
    tid: libc::pid_t,
}

impl Vsock {
    /// Creates the device for a guest with CID `guest_cid` (3 to 2^32 - 2), its transport
    /// (interrupting through `irq`) and its poller thread.
    pub fn new(
        guest_cid: u64,
        memory: GuestMemoryMmap,
        irq: Arc<dyn IrqLine>,
    ) -> Result<(Vsock, MmioTransport), VsockError> {
        let (shared, transport) = build(guest_cid, memory, irq)?;
        let (tid_tx, tid_rx) = mpsc::channel();
        let for_thread = shared.clone();
        let poller = std::thread::Builder::new()
            .name("clove-vsock".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions and cannot fail.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                device::run_poller(&for_thread);
            })
            .map_err(VsockError::Thread)?;
        let tid = tid_rx.recv().map_err(|_| VsockError::Thread(io::Error::other("poller exited at start")))?;
        Ok((Vsock { shared, poller: Some(poller), tid }, transport))
    }

    /// Bridges the first guest connection to host port `port` to `stream` (one-shot).
    pub fn add_host_port(&self, port: u32, stream: UnixStream) -> Result<(), VsockError> {
        self.shared.lock().add_listener(port, stream)
    }

    /// Opens a connection to the guest's `guest_port`; the returned stream is bridged once the
    /// guest accepts, and reads EOF if it refuses. Bytes written before then wait.
    pub fn connect(&self, guest_port: u32) -> Result<UnixStream, VsockError> {
        let stream = self.shared.lock().connect(guest_port)?;
        self.shared.wake();
        Ok(stream)
    }

    /// Takes the guest's kicks of the rx and tx queues ([`KICKED_QUEUES`]) from these eventfds,
    /// which the VMM has KVM signal on the matching QueueNotify writes. Once.
    pub fn take_kicks(&self, kicks: [EventFd; 2]) -> Result<(), VsockError> {
        self.shared.kicks.set(kicks).map_err(|_| VsockError::KicksTaken)?;
        self.shared.wake();
        Ok(())
    }

    /// Open connections (established or being set up).
    pub fn connection_count(&self) -> usize {
        self.shared.lock().connection_count()
    }

    /// The poller thread's Linux tid.
    pub fn thread_id(&self) -> libc::pid_t {
        self.tid
    }

    /// Stops the poller and closes every connection and registered port. Idempotent.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake();
        if let Some(poller) = self.poller.take() {
            // The poller only panics on a bug; its connections are closed below either way.
            let _ = poller.join();
        }
        self.shared.lock().close_all();
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The device and its transport without a poller: what the fuzz body drives.
fn build(
    guest_cid: u64,
    memory: GuestMemoryMmap,
    irq: Arc<dyn IrqLine>,
) -> Result<(Arc<Shared>, MmioTransport), VsockError> {
    // 0-2 are the hypervisor, local and host; u32::MAX is VMADDR_CID_ANY, and Linux keeps
    // CIDs in 32 bits.
    if guest_cid <= HOST_CID || guest_cid >= u64::from(u32::MAX) {
        return Err(VsockError::InvalidCid(guest_cid));
    }
    let muxer = Muxer::new(guest_cid, memory.clone());
    let shared = Arc::new(Shared::new(muxer, guest_cid).map_err(VsockError::Socket)?);
    let device = Box::new(VsockDevice::new(shared.clone()));
    let transport = MmioTransport::new(device, memory, irq).map_err(VsockError::Transport)?;
    Ok((shared, transport))
}
