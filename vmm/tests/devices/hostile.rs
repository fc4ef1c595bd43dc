//! A driver that lies. A broken virtqueue (descriptors outside memory, absurd lengths, loops,
//! a runaway avail index, wrong-direction buffers) or an illegal register write fails the
//! device; a bad packet (length past its buffer, over 64 KiB, wrong CIDs, overrunning our
//! credit) resets its connection. Either way the host goes on, and so does another device.

use std::io::Read;
use std::os::unix::net::UnixStream;

use clove_vmm::devices::virtio::status;
use clove_vmm::devices::vsock::fuzz::{SimDriver, RX, TX, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use clove_vmm::devices::vsock::packet::*;
use clove_vmm::devices::vsock::{Header, HOST_BUF_ALLOC, MAX_PAYLOAD};
use vm_memory::{Bytes, GuestAddress};

use super::{guest_connect, has_op, hdr, recv_until, vm, WithLen};

/// Runs `attack` on a fresh device, expects it failed, and checks that a reset brings it back
/// and that a second device beside it works throughout.
fn fails_device(attack: impl FnOnce(&mut SimDriver<'_>)) {
    let mut bystander = vm();
    let mut other = SimDriver::new(&mut bystander.mmio, bystander.mem.clone());
    other.init(256);
    other.give_rx(8, 4096);

    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(8, 4096);
    attack(&mut d);
    assert!(d.failed(), "status {:#x}", d.status());
    assert_ne!(d.read32(0x60) & 2, 0, "config-change interrupt tells the driver");
    let _ = d.recv();
    d.send(hdr(OP_REQUEST, 1, 1024), &[]);
    assert!(d.recv().is_empty(), "a failed device does nothing");

    let mut host = guest_connect(&bystander.vsock, &mut other, 1024, 7);
    other.send(hdr(OP_RW, 7, 1024).with_len(2), b"ok");
    let mut buf = [0u8; 2];
    host.read_exact(&mut buf).expect("the bystander still works");

    assert_eq!(d.init(256) & status::DEVICE_NEEDS_RESET, 0, "reset clears the failure");
    d.give_rx(8, 4096);
    let _host = guest_connect(&vm.vsock, &mut d, 1024, 8);
}

fn tx_chain(d: &mut SimDriver<'_>, descs: &[(u64, u32, u16, u16)]) {
    for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
        d.write_desc(TX, i as u16, addr, len, flags, next);
    }
    d.push_avail(TX, 0);
    d.notify(TX);
}

#[test]
fn descriptor_outside_guest_memory_fails_the_device() {
    fails_device(|d| tx_chain(d, &[(0xffff_0000_0000, 64, 0, 0)]));
}

#[test]
fn descriptor_with_absurd_length_fails_the_device() {
    fails_device(|d| {
        let at = d.alloc(64);
        tx_chain(d, &[(at, u32::MAX, 0, 0)]);
    });
}

#[test]
fn looping_descriptor_chain_fails_the_device() {
    fails_device(|d| {
        let at = d.alloc(64);
        tx_chain(d, &[(at, 16, VRING_DESC_F_NEXT, 1), (at + 16, 16, VRING_DESC_F_NEXT, 0)]);
    });
}

#[test]
fn next_index_past_the_table_fails_the_device() {
    fails_device(|d| {
        let at = d.alloc(64);
        tx_chain(d, &[(at, 44, VRING_DESC_F_NEXT, 300)]);
    });
}

#[test]
fn avail_index_running_past_the_ring_fails_the_device() {
    fails_device(|d| {
        let avail = d.queues[usize::from(TX)].avail;
        let _ = d.mem.write_obj(300u16, GuestAddress(avail + 2));
        d.notify(TX);
    });
}

#[test]
fn writable_buffer_in_tx_and_readable_in_rx_fail_the_device() {
    fails_device(|d| {
        let at = d.alloc(64);
        tx_chain(d, &[(at, 64, VRING_DESC_F_WRITE, 0)]);
    });
    fails_device(|d| {
        let at = d.alloc(4096);
        d.add_chain(RX, &[(at, 4096, false)]);
        // Owe the guest a packet so the device takes an rx chain: the read-only one is next
        // after the eight good ones.
        for port in 0..9 {
            d.send(hdr(OP_REQUEST, port, 9999), &[]);
        }
    });
}

#[test]
fn illegal_register_writes_fail_the_device() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    let cases: [&dyn Fn(&mut SimDriver<'_>); 5] = [
        // Queue size not a power of two, and over the maximum.
        &|d| set_queue_num(d, 100),
        &|d| set_queue_num(d, 512),
        // A feature that was not offered.
        &|d| {
            d.write32(0x70, status::ACKNOWLEDGE | status::DRIVER);
            d.write32(0x24, 0);
            d.write32(0x20, 1 << 5);
        },
        // DRIVER_OK before FEATURES_OK.
        &|d| d.write32(0x70, status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK),
        // A ring outside guest memory, then QueueReady.
        &|d| {
            set_queue_num(d, 256);
            d.write32(0x80, 0);
            d.write32(0x84, 0x10);
            d.write32(0x44, 1);
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        d.write32(0x70, 0);
        case(&mut d);
        assert!(d.failed(), "case {i}: status {:#x}", d.status());
    }
    d.write32(0x70, 0);
    assert!(!d.failed());
}

fn set_queue_num(d: &mut SimDriver<'_>, num: u32) {
    d.write32(0x70, status::ACKNOWLEDGE);
    d.write32(0x70, status::ACKNOWLEDGE | status::DRIVER);
    d.write32(0x24, 1);
    d.write32(0x20, 1);
    d.write32(0x70, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    d.write32(0x30, 0);
    d.write32(0x38, num);
}

/// A packet-level lie: the connection is reset, the device goes on.
fn resets_connection(packet: impl FnOnce(&mut SimDriver<'_>)) {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(16, 4096);
    let mut host = guest_connect(&vm.vsock, &mut d, 1024, 77);
    packet(&mut d);
    let got = recv_until(&mut d, has_op(OP_RST));
    assert!(!d.failed());
    assert_eq!(got.iter().find(|(h, _)| h.op == OP_RST).map(|(h, _)| h.dst_cid), Some(3));
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).expect("host sees EOF");
    assert!(rest.is_empty(), "no byte of the bad packet reached the host");
    let _host = guest_connect(&vm.vsock, &mut d, 1025, 78);
}

#[test]
fn header_len_past_its_buffer_resets_the_connection() {
    resets_connection(|d| {
        let at = d.alloc(64);
        let _ = d.mem.write_slice(&hdr(OP_RW, 77, 1024).with_len(1000).to_bytes(), GuestAddress(at));
        d.add_chain(TX, &[(at, 44, false), (at + 44, 10, false)]);
        d.notify(TX);
    });
}

#[test]
fn header_len_over_64k_resets_the_connection() {
    resets_connection(|d| {
        let at = d.alloc(64);
        let len = MAX_PAYLOAD as u32 + 1;
        let _ = d.mem.write_slice(&hdr(OP_RW, 77, 1024).with_len(len).to_bytes(), GuestAddress(at));
        d.add_chain(TX, &[(at, 44, false), (at + 44, len, false)]);
        d.notify(TX);
    });
}

#[test]
fn wrong_cids_reset_the_connection() {
    resets_connection(|d| {
        d.send(Header { dst_cid: 7, ..hdr(OP_RW, 77, 1024).with_len(1) }, b"x");
    });
    resets_connection(|d| {
        d.send(Header { src_cid: 4, ..hdr(OP_RW, 77, 1024).with_len(1) }, b"x");
    });
}

#[test]
fn overrunning_our_credit_resets_the_connection() {
    let mut vm = vm();
    let mut d = SimDriver::new(&mut vm.mmio, vm.mem.clone());
    d.init(256);
    d.give_rx(16, 4096);
    // Nobody reads this host end, so the device must hold what it cannot forward.
    let (_host_unread, device_end) = UnixStream::pair().expect("socketpair");
    vm.vsock.add_host_port(1024, device_end).expect("port");
    d.send(hdr(OP_REQUEST, 77, 1024), &[]);
    recv_until(&mut d, has_op(OP_RESPONSE));
    // Send what the credit we were told allows, in 64 KiB packets, then one byte too many.
    let (mut sent, mut fwd_known) = (0u32, 0u32);
    loop {
        for (h, _) in d.recv() {
            fwd_known = h.fwd_cnt;
        }
        let allowed = HOST_BUF_ALLOC - (sent - fwd_known);
        if (allowed as usize) < MAX_PAYLOAD {
            let over = vec![1u8; allowed as usize + 1];
            d.send(hdr(OP_RW, 77, 1024).with_len(over.len() as u32), &over);
            break;
        }
        d.send(hdr(OP_RW, 77, 1024).with_len(MAX_PAYLOAD as u32), &[1u8; MAX_PAYLOAD]);
        d.take_used(TX);
        sent += MAX_PAYLOAD as u32;
        assert!(sent < 64 * HOST_BUF_ALLOC, "the socket never filled");
    }
    recv_until(&mut d, has_op(OP_RST));
    assert!(!d.failed());
}
