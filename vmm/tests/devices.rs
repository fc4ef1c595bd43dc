//! The virtio-mmio transport and the vsock device driven by a simulated guest driver (no KVM):
//! the registers in the order Linux writes them, split virtqueues in a `GuestMemoryMmap`, and
//! host `UnixStream`s on the other side. Hostile drivers are in `devices/hostile.rs`, the
//! seeded fuzz runs in `devices/fuzz_runs.rs`.

#[path = "devices/fuzz_runs.rs"]
mod fuzz_runs;
#[path = "devices/hostile.rs"]
mod hostile;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clove_vmm::devices::virtio::{status, MmioTransport};
use clove_vmm::devices::vsock::fuzz::{SimDriver, MEM_SIZE};
use clove_vmm::devices::vsock::packet::*;
use clove_vmm::devices::vsock::{Header, Vsock, FIRST_HOST_PORT, HOST_CID};
use clove_vmm::devices::IrqLine;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const GUEST_CID: u64 = 3;

#[derive(Default)]
pub struct CountingIrq(AtomicUsize);

impl IrqLine for CountingIrq {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub struct Vm {
    pub vsock: Vsock,
    pub mmio: MmioTransport,
    pub mem: GuestMemoryMmap,
    pub irq: Arc<CountingIrq>,
}

pub fn vm() -> Vm {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory");
    let irq = Arc::new(CountingIrq::default());
    let (vsock, mmio) = Vsock::new(GUEST_CID, mem.clone(), irq.clone()).expect("vsock");
    Vm { vsock, mmio, mem, irq }
}

/// A guest packet header from `guest_port` to host port `host_port`, advertising 64 KiB.
pub fn hdr(op: u16, guest_port: u32, host_port: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: guest_port,
        dst_port: host_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 64 * 1024,
        ..Header::default()
    }
}

/// Collects packets from the device until `done` says the collection is complete.
pub fn recv_until(d: &mut SimDriver<'_>, mut done: impl FnMut(&[(Header, Vec<u8>)]) -> bool) -> Vec<(Header, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    loop {
        got.extend(d.recv());
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out; got {got:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn has_op(op: u16) -> impl FnMut(&[(Header, Vec<u8>)]) -> bool {
    move |got| got.iter().any(|(h, _)| h.op == op)
}

/// Registers `host_port`, connects to it from `guest_port` and returns the host end.
pub fn guest_connect(vm_vsock: &Vsock, d: &mut SimDriver<'_>, host_port: u32, guest_port: u32) -> UnixStream {
    let (host, device_end) = UnixStream::pair().expect("socketpair");
    vm_vsock.add_host_port(host_port, device_end).expect("register port");
    d.send(hdr(OP_REQUEST, guest_port, host_port), &[]);
    let got = recv_until(d, has_op(OP_RESPONSE));
    let (h, _) = &got[0];
    assert_eq!((h.op, h.src_port, h.dst_port, h.dst_cid), (OP_RESPONSE, host_port, guest_port, GUEST_CID));
    host.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    host
}

fn read_n(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("host read");
    buf
}

#[test]
fn registers_identify_a_vsock_device_and_config_holds_the_cid() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    assert_eq!(d.read32(0x000), 0x7472_6976);
    assert_eq!(d.read32(0x004), 2);
    assert_eq!(d.read32(0x008), 19);
    d.write32(0x014, 1);
    assert_eq!(d.read32(0x010), 1, "VIRTIO_F_VERSION_1 only");
    let st = d.init(256);
    assert_eq!(st, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
    assert_eq!(d.read32(0x100), 3);
    assert_eq!(d.read32(0x104), 0);
    let mut cid = [0xa5u8; 8];
    d.mmio.read(0x100, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
    d.write32(0x030, 0);
    assert_eq!((d.read32(0x034), d.read32(0x044)), (256, 1));
}

#[test]
fn guest_connection_carries_bytes_both_ways_and_interrupts() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(16, 4096);
    let irqs_before = vm.irq.0.load(Ordering::SeqCst);
    let mut host = guest_connect(&vm.vsock, &mut d, 1025, 40_000);
    assert!(vm.irq.0.load(Ordering::SeqCst) > irqs_before, "the RESPONSE raised the irq");
    assert_ne!(d.read32(0x060) & 1, 0, "used-buffer bit set");
    d.write32(0x064, 1);
    assert_eq!(d.read32(0x060) & 1, 0, "ack clears it");

    d.send(hdr(OP_RW, 40_000, 1025).with_len(5), b"hello");
    assert_eq!(read_n(&mut host, 5), b"hello");
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    host.write_all(&big).expect("host write");
    let got = recv_until(&mut d, |g| g.iter().map(|(_, p)| p.len()).sum::<usize>() >= big.len());
    let bytes: Vec<u8> = got
        .iter()
        .flat_map(|(h, p)| {
            assert_eq!((h.op, h.src_port, h.dst_port), (OP_RW, 1025, 40_000));
            p.clone()
        })
        .collect();
    assert_eq!(bytes, big);
    assert_eq!(vm.vsock.connection_count(), 1);
}

#[test]
fn kicks_on_eventfds_are_served_by_the_poller_as_from_the_register() {
    let mut vm = vm();
    let kick = || EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let kicks = [kick(), kick()];
    let driver_side = kicks.each_ref().map(|k| k.try_clone().expect("dup"));
    vm.vsock.take_kicks(kicks).expect("first kicks");
    assert!(vm.vsock.take_kicks([kick(), kick()]).is_err(), "kicks are taken once");
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.kick_through(driver_side);
    d.give_rx(16, 4096);
    let mut host = guest_connect(&vm.vsock, &mut d, 1025, 40_000);
    d.send(hdr(OP_RW, 40_000, 1025).with_len(5), b"hello");
    assert_eq!(read_n(&mut host, 5), b"hello");
    host.write_all(b"back").expect("host write");
    let got = recv_until(&mut d, |g| g.iter().any(|(h, p)| h.op == OP_RW && p == b"back"));
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (1025, 40_000));
}

#[test]
fn host_initiated_connection_is_bridged_once_the_guest_accepts() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(64);
    d.give_rx(16, 4096);
    let mut s = vm.vsock.connect(5000).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let got = recv_until(&mut d, has_op(OP_REQUEST));
    let req = got[0].0;
    assert_eq!(req.dst_port, 5000);
    assert!(req.src_port >= FIRST_HOST_PORT);
    s.write_all(b"ping").expect("write before accept waits");
    d.send(hdr(OP_RESPONSE, 5000, req.src_port), &[]);
    let got = recv_until(&mut d, has_op(OP_RW));
    assert_eq!(got.iter().find(|(h, _)| h.op == OP_RW).map(|(_, p)| p.as_slice()), Some(&b"ping"[..]));
    d.send(hdr(OP_RW, 5000, req.src_port).with_len(4), b"pong");
    assert_eq!(read_n(&mut s, 4), b"pong");
    d.send(hdr(OP_RST, 5000, req.src_port), &[]);
    assert_eq!(s.read(&mut [0u8; 8]).expect("eof"), 0, "the guest's RST ends the stream");

    let mut refused = vm.vsock.connect(6000).expect("connect");
    refused.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let req = recv_until(&mut d, has_op(OP_REQUEST))[0].0;
    d.send(hdr(OP_RST, 6000, req.src_port), &[]);
    assert_eq!(refused.read(&mut [0u8; 8]).expect("eof"), 0);
}

#[test]
fn host_data_never_exceeds_the_guest_credit() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(64, 4096);
    let (host, device_end) = UnixStream::pair().expect("socketpair");
    vm.vsock.add_host_port(1026, device_end).expect("port");
    d.send(Header { buf_alloc: 1000, ..hdr(OP_REQUEST, 41_000, 1026) }, &[]);
    recv_until(&mut d, has_op(OP_RESPONSE));
    (&host).write_all(&[7u8; 5000]).expect("host write");
    let data = |g: &[(Header, Vec<u8>)]| g.iter().filter(|(h, _)| h.op == OP_RW).map(|(_, p)| p.len()).sum::<usize>();
    let got = recv_until(&mut d, |g| data(g) >= 1000 && g.iter().any(|(h, _)| h.op == OP_CREDIT_REQUEST));
    assert_eq!(data(&got), 1000, "exactly the credit, no more");
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.recv().iter().all(|(h, _)| h.op != OP_RW), "nothing past the credit");
    // The guest consumed 1000 bytes: another 1000 may come.
    d.send(Header { buf_alloc: 1000, fwd_cnt: 1000, ..hdr(OP_CREDIT_UPDATE, 41_000, 1026) }, &[]);
    let got = recv_until(&mut d, |g| data(g) >= 1000);
    assert_eq!(data(&got), 1000);
}

#[test]
fn unregistered_ports_and_second_connections_get_rst() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(16, 4096);
    d.send(hdr(OP_REQUEST, 42_000, 9999), &[]);
    let got = recv_until(&mut d, has_op(OP_RST));
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (9999, 42_000));
    let _host = guest_connect(&vm.vsock, &mut d, 1027, 42_001);
    d.send(hdr(OP_REQUEST, 42_002, 1027), &[]);
    let got = recv_until(&mut d, has_op(OP_RST));
    assert_eq!(got[0].0.dst_port, 42_002, "the port was one-shot");
    // Data for a connection that does not exist is answered with RST too.
    d.send(hdr(OP_RW, 42_003, 1027).with_len(1), b"x");
    assert_eq!(recv_until(&mut d, has_op(OP_RST))[0].0.dst_port, 42_003);
    assert_eq!(vm.vsock.connection_count(), 1);
}

#[test]
fn many_connections_each_carry_their_own_bytes() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(128, 4096);
    let mut hosts: Vec<UnixStream> =
        (0..100u32).map(|i| guest_connect(&vm.vsock, &mut d, 2000 + i, 50_000 + i)).collect();
    assert_eq!(vm.vsock.connection_count(), 100);
    // The RESPONSEs used 100 of the rx buffers; the host data below waits for more.
    d.give_rx(128, 4096);
    for i in 0..100u32 {
        let msg = format!("conn {i}");
        d.send(hdr(OP_RW, 50_000 + i, 2000 + i).with_len(msg.len() as u32), msg.as_bytes());
    }
    for (i, host) in hosts.iter_mut().enumerate() {
        let msg = format!("conn {i}");
        assert_eq!(read_n(host, msg.len()), msg.as_bytes());
        host.write_all(format!("back {i}").as_bytes()).expect("host write");
    }
    let got = recv_until(&mut d, |g| g.iter().filter(|(h, _)| h.op == OP_RW).count() >= 100);
    for (h, p) in got.iter().filter(|(h, _)| h.op == OP_RW) {
        assert_eq!(p, format!("back {}", h.src_port - 2000).as_bytes());
        assert_eq!(h.dst_port - 50_000, h.src_port - 2000);
    }
}

#[test]
fn shutdown_half_closes_and_a_full_shutdown_is_answered_with_rst() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(32, 4096);
    let mut host = guest_connect(&vm.vsock, &mut d, 1028, 43_000);
    d.send(hdr(OP_RW, 43_000, 1028).with_len(3), b"end");
    d.send(Header { flags: SHUTDOWN_SEND, ..hdr(OP_SHUTDOWN, 43_000, 1028) }, &[]);
    let mut all = Vec::new();
    host.read_to_end(&mut all).expect("host reads to EOF");
    assert_eq!(all, b"end", "data, then EOF from the guest's SHUTDOWN(SEND)");
    host.write_all(b"reply").expect("the other direction stays open");
    let got = recv_until(&mut d, has_op(OP_RW));
    assert_eq!(got.iter().find(|(h, _)| h.op == OP_RW).map(|(_, p)| p.as_slice()), Some(&b"reply"[..]));
    d.send(Header { flags: SHUTDOWN_SEND | SHUTDOWN_RCV, ..hdr(OP_SHUTDOWN, 43_000, 1028) }, &[]);
    recv_until(&mut d, has_op(OP_RST));
    assert_eq!(vm.vsock.connection_count(), 0);

    // The host closing its end: SHUTDOWN(SEND) to the guest, then RST once it is fully gone.
    let host = guest_connect(&vm.vsock, &mut d, 1029, 43_001);
    drop(host);
    let got = recv_until(&mut d, has_op(OP_RST));
    let ops: Vec<u16> = got.iter().map(|(h, _)| h.op).collect();
    assert_eq!(ops, [OP_SHUTDOWN, OP_RST]);
    assert_eq!(got[0].0.flags, SHUTDOWN_SEND);
}

#[test]
fn reset_mid_stream_closes_connections_and_the_device_comes_back() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(16, 4096);
    let mut host = guest_connect(&vm.vsock, &mut d, 1030, 44_000);
    d.send(hdr(OP_RW, 44_000, 1030).with_len(2), b"hi");
    assert_eq!(read_n(&mut host, 2), b"hi");
    d.write32(0x70, 0);
    assert_eq!(d.status(), 0);
    assert_eq!(host.read(&mut [0u8; 4]).expect("eof"), 0, "reset ends the connection");
    assert_eq!(vm.vsock.connection_count(), 0);
    d.init(128);
    d.give_rx(16, 4096);
    let mut host = guest_connect(&vm.vsock, &mut d, 1031, 44_001);
    d.send(hdr(OP_RW, 44_001, 1031).with_len(5), b"again");
    assert_eq!(read_n(&mut host, 5), b"again");
}

#[test]
fn shutdown_joins_the_poller_and_closes_every_stream() {
    let mut vm = vm();
    assert!(vm.vsock.thread_id() > 0);
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(16, 4096);
    let mut host = guest_connect(&vm.vsock, &mut d, 1032, 45_000);
    let (_, unused) = UnixStream::pair().expect("socketpair");
    vm.vsock.add_host_port(1033, unused).expect("port");
    drop(d);
    vm.vsock.shutdown();
    assert_eq!(host.read(&mut [0u8; 4]).expect("eof"), 0);
    assert_eq!(vm.vsock.connection_count(), 0);
}

/// Sets `len` to the payload's length.
trait WithLen {
    fn with_len(self, len: u32) -> Self;
}

impl WithLen for Header {
    fn with_len(mut self, len: u32) -> Self {
        self.len = len;
        self
    }
}
