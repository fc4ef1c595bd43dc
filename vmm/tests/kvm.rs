//! KVM plumbing on this machine's own /dev/kvm: a VM with memory, a vCPU, a few real-mode guest
//! instructions, and the port, MMIO and halt exits they cause, as values.

use clove_vmm::{Exit, Vm};
use vm_memory::{Bytes, GuestAddress};

/// `/dev/kvm` is there to use, or the test says SKIPPED loudly.
fn kvm_or_skip(test: &str) -> bool {
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !usable {
        eprintln!("SKIPPED: {test}: /dev/kvm cannot be opened here");
    }
    usable
}

#[test]
fn guest_code_runs_and_its_port_mmio_and_halt_exits_come_back() {
    if !kvm_or_skip("guest_code_runs_and_its_port_mmio_and_halt_exits_come_back") {
        return;
    }
    let vm = Vm::new(64 << 10).unwrap();
    // mov dx, 0x3f8 ; mov al, 'C' ; out dx, al ; in al, dx ; mov bx, 0x8000 ; mov ds, bx ;
    // mov [0], al ; mov al, [1] ; hlt
    let code: &[u8] = &[
        0xba, 0xf8, 0x03, 0xb0, b'C', 0xee, 0xec, 0xbb, 0x00, 0x80, 0x8e, 0xdb, 0xa2, 0x00, 0x00, 0xa0, 0x01, 0x00,
        0xf4,
    ];
    vm.memory().write_slice(code, GuestAddress(0x1000)).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.enter_real_mode(0x1000).unwrap();
    let exits: Vec<Exit> = (0..5).map(|_| vcpu.run().unwrap()).collect();
    assert_eq!(
        exits,
        [
            Exit::IoOut { port: 0x3f8, data: vec![b'C'] },
            Exit::IoIn { port: 0x3f8, len: 1 },
            // The `in` read 0, which the store then wrote to 0x8000:0 = 0x80000, beyond the 64 KiB of RAM.
            Exit::MmioWrite { addr: 0x80000, data: vec![0] },
            Exit::MmioRead { addr: 0x80001, len: 1 },
            Exit::Halt,
        ]
    );
}

#[test]
fn guest_memory_holds_what_the_host_wrote_and_the_guest_stored() {
    if !kvm_or_skip("guest_memory_holds_what_the_host_wrote_and_the_guest_stored") {
        return;
    }
    let vm = Vm::new(64 << 10).unwrap();
    // mov byte [0x2000], 0x5a ; hlt
    let code: &[u8] = &[0xc6, 0x06, 0x00, 0x20, 0x5a, 0xf4];
    vm.memory().write_slice(code, GuestAddress(0x1000)).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.enter_real_mode(0x1000).unwrap();
    assert_eq!(vcpu.run().unwrap(), Exit::Halt);
    let stored: u8 = vm.memory().read_obj(GuestAddress(0x2000)).unwrap();
    assert_eq!(stored, 0x5a, "a store to RAM lands in the host's mapping, with no exit");
}
